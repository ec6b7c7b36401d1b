//! `mcp-gateway`: the MCP server through which agents start and steer their child sessions.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "mcp-gateway", version, about)]
struct Args {}

fn main() {
    let _args = Args::parse();
    eprintln!("mcp-gateway: the tools are not implemented yet");
    std::process::exit(1);
}
