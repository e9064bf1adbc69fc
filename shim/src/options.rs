//! containerd's runc options (`containerd.runc.v1.Options`), which `ctr` and the CRI plugin
//! put in a Create request. Decoded by hand: the fields are few and the proto is not part
//! of containerd-shim-protos.

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::CodedInputStream;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RuncOptions {
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
    pub binary_name: String,
    pub root: String,
}

impl RuncOptions {
    pub fn is_runc_options(type_url: &str) -> bool {
        type_url.ends_with("containerd.runc.v1.Options")
            || type_url.ends_with("runtimeoptions.v1.Options")
    }

    pub fn decode(bytes: &[u8]) -> containerd_shim_protos::protobuf::Result<RuncOptions> {
        let mut o = RuncOptions::default();
        let mut is = CodedInputStream::from_bytes(bytes);
        while let Some(tag) = is.read_raw_tag_or_eof()? {
            let (field, wire) = (tag >> 3, tag & 7);
            match (field, wire) {
                (1, 0) => o.no_pivot_root = is.read_bool()?,
                (2, 0) => o.no_new_keyring = is.read_bool()?,
                (6, 2) => o.binary_name = is.read_string()?,
                (7, 2) => o.root = is.read_string()?,
                _ => {
                    let wt = containerd_shim_protos::protobuf::rt::WireType::new(wire).ok_or_else(
                        || {
                            containerd_shim_protos::protobuf::Error::from(std::io::Error::other(
                                "bad wire type",
                            ))
                        },
                    )?;
                    is.skip_field(wt)?;
                }
            }
        }
        Ok(o)
    }
}

/// `containerd.runc.v1.ProcessDetails{exec_id}` in an `Any`: what containerd-shim-runc-v2
/// puts in `ProcessInfo.info` for an exec'd process, so `ctr task ps` shows its exec id.
/// Encoded by hand: one string field, number 1.
pub fn process_details(exec_id: &str) -> Any {
    let mut value = Vec::with_capacity(exec_id.len() + 6);
    value.push(1 << 3 | 2);
    let mut len = exec_id.len();
    // Varint length: seven bits at a time, low first, high bit says more follow.
    while len >= 0x80 {
        value.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    value.push(len as u8);
    value.extend_from_slice(exec_id.as_bytes());
    Any {
        type_url: PROCESS_DETAILS.to_string(),
        value,
        ..Default::default()
    }
}

/// The type URL containerd files ProcessDetails under (its proto name, as Go's typeurl
/// spells it).
pub const PROCESS_DETAILS: &str = "containerd.runc.v1.ProcessDetails";

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::CodedOutputStream;

    #[test]
    fn process_details_encode_like_protobuf() {
        for id in ["x", "exec-1", &"long".repeat(100)] {
            let mut want = Vec::new();
            {
                let mut os = CodedOutputStream::vec(&mut want);
                os.write_string(1, id).unwrap();
                os.flush().unwrap();
            }
            let any = process_details(id);
            assert_eq!(any.value, want, "{id}");
            assert_eq!(any.type_url, "containerd.runc.v1.ProcessDetails");
        }
    }

    #[test]
    fn decodes_known_and_skips_unknown_fields() {
        let mut buf = Vec::new();
        {
            let mut os = CodedOutputStream::vec(&mut buf);
            os.write_bool(1, true).unwrap();
            os.write_string(3, "/shim-cgroup").unwrap();
            os.write_uint32(4, 1000).unwrap();
            os.write_string(6, "/usr/bin/crun").unwrap();
            os.write_string(7, "/run/x").unwrap();
            os.write_bool(9, true).unwrap();
            os.flush().unwrap();
        }
        let o = RuncOptions::decode(&buf).unwrap();
        assert!(o.no_pivot_root);
        assert!(!o.no_new_keyring);
        assert_eq!(o.binary_name, "/usr/bin/crun");
        assert_eq!(o.root, "/run/x");
    }
}
