//! Who the shim serves: built once in `main` from the command line and handed down, so a
//! module that needs the container's id or namespace says so in its own signatures.

/// The container and namespace this shim process serves; fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct ShimContext {
    /// The container's id (containerd's task id).
    pub id: String,
    /// The containerd namespace that owns the container.
    pub namespace: String,
}

impl ShimContext {
    pub fn new(id: &str, namespace: &str) -> ShimContext {
        ShimContext {
            id: id.to_string(),
            namespace: namespace.to_string(),
        }
    }
}
