//! Every Kubernetes object shown in a ```yaml block of docs/ is accepted by the API server as written
//! (`kubectl apply --dry-run=server`: schema, CEL rules, defaulting), so what the docs tell a reader to apply
//! works. The links and make targets of the docs are checked without a cluster, in crds/tests/docs.rs.

use e2e::agents::install_crds;
use e2e::chart::kubectl;
use e2e::{with_temp_ns, workspace_root};

/// A ```yaml block of a Markdown file: where it starts, and its text.
struct YamlBlock {
    at: String,
    text: String,
}

fn yaml_blocks(shown: &str, markdown: &str) -> Vec<YamlBlock> {
    let mut blocks = Vec::new();
    let mut open: Option<YamlBlock> = None;
    for (i, line) in markdown.lines().enumerate() {
        let fence = line.trim_start();
        match open.as_mut() {
            Some(_) if fence.starts_with("```") => blocks.extend(open.take()),
            Some(block) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            None if fence == "```yaml" || fence == "```yml" => {
                open = Some(YamlBlock {
                    at: format!("{shown}:{}", i + 1),
                    text: String::new(),
                })
            }
            None => {}
        }
    }
    assert!(open.is_none(), "{shown}: a ```yaml block is never closed");
    blocks
}

/// Objects carry both `apiVersion` and `kind` at the top level; other YAML (Helm values, fragments) is not an
/// object to apply.
fn is_kubernetes_object(yaml: &str) -> bool {
    yaml.lines().any(|l| l.starts_with("apiVersion:"))
        && yaml.lines().any(|l| l.starts_with("kind:"))
}

#[tokio::test]
async fn every_yaml_example_in_the_docs_passes_server_side_dry_run() {
    let dir = workspace_root().join("docs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    let mut objects = Vec::new();
    for file in &files {
        let shown = format!(
            "docs/{}",
            file.file_name().expect("a file name").to_string_lossy()
        );
        let markdown = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{shown}: {e}"));
        objects.extend(
            yaml_blocks(&shown, &markdown)
                .into_iter()
                .filter(|b| is_kubernetes_object(&b.text)),
        );
    }
    assert!(
        objects.len() >= 3,
        "docs/ shows only {} YAML objects: is the block parser broken?",
        objects.len()
    );
    with_temp_ns("docs", |client, ns| async move {
        install_crds(&client).await;
        let mut refused = Vec::new();
        for block in &objects {
            let out = kubectl(
                &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
                Some(&block.text),
            )
            .await;
            if !out.ok {
                refused.push(format!("{} is refused:\n{}", block.at, out.stderr.trim()));
            }
        }
        assert!(
            refused.is_empty(),
            "YAML examples in docs/ the API server refuses:\n{}",
            refused.join("\n\n")
        );
    })
    .await;
}

#[test]
fn yaml_blocks_are_found_and_objects_told_apart() {
    let md = "text\n```yaml\napiVersion: v1\nkind: ConfigMap\n```\n```sh\nls\n```\n```yaml\nkey: value\n```\n";
    let blocks = yaml_blocks("x.md", md);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].at, "x.md:2");
    assert_eq!(blocks[0].text, "apiVersion: v1\nkind: ConfigMap\n");
    assert!(is_kubernetes_object(&blocks[0].text));
    assert!(!is_kubernetes_object(&blocks[1].text));
}
