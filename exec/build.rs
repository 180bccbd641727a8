//! Compiles `proto/cairn/exec/v1/exec.proto` (the execution layer's records and worker frames)
//! with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/cairn/exec/v1/exec.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        .build_client(false)
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
