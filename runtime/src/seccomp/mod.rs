//! Seccomp: compile an OCI `linux.seccomp` profile to classic BPF and load it, without
//! libseccomp at run time.
