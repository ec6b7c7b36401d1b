//! Every manifest in examples/ is accepted by the API server (admission: CRD schema and CEL rules), so what the
//! README tells a newcomer to apply works.

use e2e::agents::install_crds;
use e2e::chart::kubectl;
use e2e::{with_temp_ns, workspace_root};

#[tokio::test]
async fn every_example_passes_admission() {
    with_temp_ns("examples", |client, ns| async move {
        install_crds(&client).await;
        let dir = workspace_root().join("examples");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("examples/")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        assert!(files.len() >= 5, "examples/ holds {files:?}");
        for file in files {
            let path = file.to_string_lossy();
            let out = kubectl(&["apply", "--dry-run=server", "-n", &ns, "-f", &path], None).await;
            assert!(out.ok, "{} is refused:\n{}", file.display(), out.stderr);
        }
    })
    .await;
}
