//! Everything about the processes the runtime starts: creation, namespaces, privileges,
//! terminal and the messages exchanged with them during setup.

pub mod caps;
pub mod console;
pub mod fds;
pub mod init;
pub mod namespaces;
pub mod setup;
pub mod spawn;
pub mod sync;
pub mod sysctl;
pub mod trampoline;
