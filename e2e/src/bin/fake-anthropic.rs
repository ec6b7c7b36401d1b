//! `fake-anthropic`: the Anthropic Messages API stand-in with the demo script of `make run` (see
//! `e2e::demo_model`), so that the local two-level tree runs real Claude Code without an API key.

use std::net::SocketAddr;

use e2e::anthropic::FakeAnthropic;

#[tokio::main]
async fn main() {
    let listen: SocketAddr = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => "127.0.0.1:9600".parse().expect("an address"),
        [flag, addr] if flag == "--listen" => addr
            .parse()
            .unwrap_or_else(|e| panic!("--listen {addr}: {e}")),
        _ => {
            eprintln!("usage: fake-anthropic [--listen 127.0.0.1:9600]");
            std::process::exit(2);
        }
    };
    let fake = FakeAnthropic::start_on(listen, e2e::demo_model::reply).await;
    println!(
        "fake-anthropic (demo model) listening on http://{}",
        fake.addr
    );
    let _ = tokio::signal::ctrl_c().await;
}
