//! Compiles the `.proto` contracts with a vendored `protoc`, so no system install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/auth.proto", "proto/metadata.proto", "proto/messages.proto", "proto/events.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(config, &files, &["proto"])?;
    Ok(())
}
