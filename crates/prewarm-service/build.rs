//! Generates the KEDA external scaler's gRPC server from `proto/externalscaler.proto`, with the
//! protobuf compiler the `protoc-bin-vendored` crate ships (nothing to install).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build runs the compiler named by PROTOC.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/externalscaler.proto");
    tonic_prost_build::configure()
        .build_client(false)
        .compile_protos(&["proto/externalscaler.proto"], &["proto"])?;
    Ok(())
}
