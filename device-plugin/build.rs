//! Compiles the kubelet .proto files without protoc: protox parses them
//! into a FileDescriptorSet and tonic-prost-build generates the code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/deviceplugin.proto",
        "proto/pluginregistration.proto",
        "proto/podresources.proto",
        "proto/dra_v1.proto",
        "proto/dra_v1beta1.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
