//! The committed CRD manifests are exactly what the API types generate: run `make crds` after changing a type.

#[test]
fn committed_manifests_match_the_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    for (plural, crd) in crds::all_crds() {
        let path = dir.join(format!("{plural}.yaml"));
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `make crds`", path.display()));
        assert!(
            committed == crds::to_yaml(&crd),
            "{} is stale: run `make crds` and commit the result",
            path.display()
        );
    }
}
