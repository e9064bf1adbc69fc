//! hugetlb: per page size limits.

use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use crate::error::Error;
use crate::fsio;

fn check_page_size(size: &str) -> Result<(), Error> {
    let valid = size.len() > 2
        && (size.ends_with("KB") || size.ends_with("MB") || size.ends_with("GB"))
        && size[..size.len() - 2].bytes().all(|b| b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidValue {
            what: format!("hugepage size {size:?}"),
            reason: "expected a number followed by KB, MB or GB (e.g. 2MB)".into(),
        })
    }
}

/// v1 has `hugetlb.<size>.limit_in_bytes`, v2 `hugetlb.<size>.max`; both have a reservation
/// variant on newer kernels, kept in step like runc does.
pub fn set(dir: &Path, limits: &[LinuxHugepageLimit], v2: bool) -> Result<(), Error> {
    for l in limits {
        let size = l.page_size();
        check_page_size(size)?;
        let value = l.limit().to_string();
        let (file, rsvd) = if v2 {
            (
                format!("hugetlb.{size}.max"),
                format!("hugetlb.{size}.rsvd.max"),
            )
        } else {
            (
                format!("hugetlb.{size}.limit_in_bytes"),
                format!("hugetlb.{size}.rsvd.limit_in_bytes"),
            )
        };
        fsio::write(dir, &file, &value)?;
        if fsio::exists(dir, &rsvd) {
            fsio::write(dir, &rsvd, &value)?;
        }
    }
    Ok(())
}
