//! Output as Docker prints it: human sizes and times, `--format` templates, aligned tables.

pub mod human;
pub mod template;
