//! Generates the `bank.v1` client from the example's proto (protox: no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=../bank/proto/bank.proto");
    let fds = protox::compile(["bank.proto"], ["../bank/proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
