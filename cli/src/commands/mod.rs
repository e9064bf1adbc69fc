//! The commands: argument parsing and output over the engine.

pub mod archive;
pub mod build;
pub mod container;
pub mod image;
pub mod network;
pub mod system;
pub mod volume;

/// An I/O error's reason as Go words it (`no such file or directory`), as Docker prints.
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s);
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
