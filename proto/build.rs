// protoc comes from the vendored crate so a fresh machine needs no apt package to build.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .compile_protos(&["proto/imaged.proto", "proto/netd.proto"], &["proto"])?;
    Ok(())
}
