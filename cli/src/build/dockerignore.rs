//! .dockerignore
