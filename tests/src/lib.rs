//! Test harness for Berth's end-to-end tests.
//!
//! Every test gets a [`TestEnv`]: a private temp dir holding its own
//! `BERTH_ROOT` and `BERTH_RUN`, a unique name prefix for everything it creates
//! on the host (containers, cgroups, network namespaces, links, nft tables),
//! and clean-up on drop that runs even when the test panics.
//!
//! ```no_run
//! use berth_tests::{bin, require_root, run, Bundle, TestEnv};
//!
//! if !require_root() {
//!     return;
//! }
//! let env = TestEnv::new("hello");
//! let bundle = Bundle::busybox(&env);
//! bundle.args(&["echo", "hi"]);
//! let out = run(env
//!     .oci_runtime(bin("berth-runtime"))
//!     .args(["run", "--bundle"])
//!     .arg(bundle.path())
//!     .arg(env.unique("c")));
//! out.assert_success();
//! assert_eq!(out.stdout, "hi\n");
//! ```

mod bundle;
mod cleanup;
mod env;
pub mod features;
mod host;
mod paths;
mod process;
mod registry;

pub use bundle::Bundle;
pub use cleanup::CleanupReport;
pub use env::TestEnv;
pub use host::{has_cmd, host_lacks, is_root, require_cmds, require_root, skip};
pub use paths::{bin, bin_dir, debian_fixtures, fixtures, workspace_root};
pub use process::{run, run_timeout, run_with_input, Output, DEFAULT_TIMEOUT};
pub use registry::Registry;
