//! Test harness shared by Berth's end-to-end tests.
