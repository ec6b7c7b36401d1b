//! Writes the CRD manifests generated from the API types: `crdgen DIR [REFERENCE]` writes DIR/<plural>.yaml and,
//! given a second path, the API reference in Markdown there (`make crds` writes `docs/api.md`); with no argument it
//! prints the manifests as one YAML stream.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let crds = crds::all_crds();
    let mut args = std::env::args_os().skip(1);
    match args.next() {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir)?;
            for (plural, crd) in &crds {
                std::fs::write(dir.join(format!("{plural}.yaml")), crds::to_yaml(crd))?;
            }
            if let Some(reference) = args.next() {
                let reference = PathBuf::from(reference);
                if let Some(parent) = reference.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(reference, crds::reference::render(&crds))?;
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
