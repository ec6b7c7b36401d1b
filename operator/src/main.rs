//! `agent-operator`: the controller that runs AgentJobs as Pods and keeps AgentSessions and their callbacks.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "agent-operator", version, about)]
struct Args {}

fn main() {
    let _args = Args::parse();
    eprintln!("agent-operator: the controllers are not implemented yet");
    std::process::exit(1);
}
