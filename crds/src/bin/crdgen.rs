//! Writes the CRD manifests generated from the API types: `crdgen DIR` writes DIR/<plural>.yaml; with no argument
//! it prints them all as one YAML stream.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let crds = crds::all_crds();
    match std::env::args_os().nth(1) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir)?;
            for (plural, crd) in &crds {
                std::fs::write(dir.join(format!("{plural}.yaml")), crds::to_yaml(crd))?;
            }
        }
        None => {
            for (_, crd) in &crds {
                println!("---\n{}", crds::to_yaml(crd));
            }
        }
    }
    Ok(())
}
