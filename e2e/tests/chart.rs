//! The Helm chart (charts/agent-orchestrator) against the local control plane: its CRD copies, its values schema,
//! every rendered object validated by the API server, install/upgrade/uninstall, CRD upgrades through the release,
//! and what each of its ServiceAccounts may do.

use std::collections::BTreeSet;

use e2e::chart::{
    Access, TIMEOUT, TempDir, chart_dir, copy_dir, count_objects, finally, helm, helm_ok,
    install_service_monitor_crd, kubectl, may, uninstall_quietly,
};
use e2e::{agents::install_crds, eventually, unique, wait_for, with_temp_ns, workspace_root};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const CHART_NAME: &str = "agent-orchestrator";

fn chart() -> String {
    chart_dir().to_string_lossy().into_owned()
}

fn all_features_values() -> String {
    chart_dir()
        .join("ci/all-features-values.yaml")
        .to_string_lossy()
        .into_owned()
}

/// `RELEASE-agent-orchestrator`, the prefix of the release's object names.
fn fullname(release: &str) -> String {
    format!("{release}-{CHART_NAME}")
}

/// Labels a namespace so that the restricted Pod Security profile is enforced (Pods) and warned about (workloads).
async fn restrict(client: &Client, ns: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let patch = json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }}});
    api.patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("label namespace {ns}: {e}"));
}

// ---------------------------------------------------------------------------------------------------------------
// No cluster needed.

/// The chart's CRDs are byte-for-byte the generated ones (`make chart-sync` copies them after `make crds`).
#[test]
fn chart_crds_are_the_generated_manifests() {
    let generated = workspace_root().join("crds/manifests");
    let copies = chart_dir().join("files/crds");
    let names = |dir: &std::path::Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        names(&generated),
        names(&copies),
        "the chart's CRD files differ from crds/manifests/: run `make chart-sync`"
    );
    for name in names(&generated) {
        let a = std::fs::read(generated.join(&name)).expect("generated CRD");
        let b = std::fs::read(copies.join(&name)).expect("chart CRD");
        assert!(
            a == b,
            "{} differs from crds/manifests/{name}: run `make chart-sync`",
            copies.join(&name).display()
        );
    }
}

/// values.schema.json refuses a misspelled key (at any depth) and a string where a number belongs, with Helm's
/// message naming the key, for template, lint and install alike; the chart's own values pass.
#[tokio::test]
async fn values_schema_refuses_misspelled_keys_and_wrong_types() {
    let chart = chart();
    let refused = [
        (
            vec!["--set", "operator.replicaCont=3"],
            "- at '/operator': additional properties 'replicaCont' not allowed",
        ),
        (
            vec!["--set", "crd.install=false"],
            "- at '': additional properties 'crd' not allowed",
        ),
        (
            vec!["--set-string", "operator.replicas=two"],
            "- at '/operator/replicas': got string, want integer",
        ),
        (
            vec!["--set-string", "gateway.port=9500"],
            "- at '/gateway/port': got string, want integer",
        ),
        (
            vec!["--set", "gateway.auth=none"],
            "- at '/gateway/auth': value must be one of 'token', 'header'",
        ),
    ];
    for (args, message) in &refused {
        for command in [
            vec!["template", "t", &chart],
            vec!["lint", "--strict", &chart],
            vec!["install", "t", &chart, "--dry-run=client"],
        ] {
            let mut all = command.clone();
            all.extend(args.iter().copied());
            let out = helm(&all).await;
            let said = format!("{}{}", out.stdout, out.stderr);
            assert!(!out.ok, "helm {} accepted bad values", all.join(" "));
            assert!(
                said.contains("values don't meet the specifications of the schema(s)")
                    && said.contains(message),
                "helm {} should say {message:?}, said:\n{said}",
                all.join(" ")
            );
        }
    }
    helm_ok(&["template", "t", &chart]).await;
    helm_ok(&["template", "t", &chart, "-f", &all_features_values()]).await;
}

// ---------------------------------------------------------------------------------------------------------------
// Against the cluster.

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among the rendered objects"))
}

fn args(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("container args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

/// The restricted Pod Security profile, field by field, on a rendered Deployment.
fn assert_restricted(deployment: &Value) {
    let name = &deployment["metadata"]["name"];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{name}"
    );
    let c = &pod["containers"][0];
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"], false,
        "{name}"
    );
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"], true,
        "{name}"
    );
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        json!(["ALL"]),
        "{name}"
    );
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert!(c[probe]["httpGet"]["path"].is_string(), "{name}: {probe}");
    }
    assert!(c["resources"]["requests"]["memory"].is_string(), "{name}");
    assert!(c["resources"]["limits"]["memory"].is_string(), "{name}");
}

/// Renders the chart and has the API server validate every object (server-side dry run in a namespace that warns
/// about the restricted Pod Security profile); returns the objects as the server would store them.
async fn validate(ns: &str, release: &str, extra: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec!["template", release, &chart, "-n", ns];
    args.extend_from_slice(extra);
    let manifests = helm_ok(&args).await;
    let out = kubectl(
        &[
            "apply",
            "-n",
            ns,
            "--server-side",
            "--force-conflicts",
            "--field-manager=e2e-chart",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
        ],
        Some(&manifests),
    )
    .await;
    assert!(
        out.ok,
        "the API server refused objects of the chart ({extra:?}):\n{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("PodSecurity"),
        "the chart's workloads violate the restricted Pod Security profile ({extra:?}):\n{}",
        out.stderr
    );
    let list: Value = serde_json::from_str(&out.stdout).expect("kubectl -o json");
    let objects = items(&list);
    assert_eq!(
        objects.len(),
        count_objects(&manifests),
        "every rendered object was validated ({extra:?})"
    );
    objects
}

/// `helm template` with the defaults, and with every optional feature on, gives objects the API server accepts
/// (CRDs, RBAC, Deployments, PDBs, NetworkPolicies, ServiceMonitors against a stand-in CRD, the example
/// AgentBlueprint against the real CRD), and the defaults wire the components together as intended.
#[tokio::test]
async fn rendered_objects_pass_server_side_validation() {
    with_temp_ns("chart-dry", |client, ns| async move {
        install_crds(&client).await;
        install_service_monitor_crd(&client).await;
        restrict(&client, &ns).await;
        let release = "dry";
        let full = fullname(release);

        let defaults = validate(&ns, release, &[]).await;
        let kinds: BTreeSet<&str> = defaults
            .iter()
            .map(|o| o["kind"].as_str().expect("kind"))
            .collect();
        assert_eq!(
            kinds,
            BTreeSet::from([
                "ClusterRole",
                "ClusterRoleBinding",
                "CustomResourceDefinition",
                "Deployment",
                "PodDisruptionBudget",
                "Role",
                "RoleBinding",
                "Service",
                "ServiceAccount",
            ]),
            "the default objects"
        );

        let operator = find(&defaults, "Deployment", &format!("{full}-operator"));
        assert_eq!(operator["spec"]["replicas"], 2);
        assert_restricted(operator);
        let operator_args = args(operator);
        for want in [
            "--leader-election=true".to_string(),
            format!("--lease-namespace={ns}"),
            format!("--lease-name={full}-operator-leader"),
            "--metrics-addr=0.0.0.0:8080".to_string(),
            format!("--mcp-url=http://{full}-gateway.{ns}.svc.cluster.local:9500/mcp"),
        ] {
            assert!(
                operator_args.contains(&want),
                "operator args {operator_args:?} lack {want}"
            );
        }
        assert_eq!(
            operator["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"],
            "POD_NAME"
        );

        let gateway = find(&defaults, "Deployment", &format!("{full}-gateway"));
        assert_eq!(gateway["spec"]["replicas"], 2);
        assert_restricted(gateway);
        let gateway_args = args(gateway);
        assert!(gateway_args.contains(&"--listen=0.0.0.0:9500".to_string()));
        assert!(gateway_args.contains(&"--auth=token".to_string()));
        // The dashboard is served by default; no Ingress unless asked for (the kinds above).
        assert!(
            !gateway_args.iter().any(|a| a.starts_with("--dashboard")),
            "{gateway_args:?}"
        );
        let hosts: BTreeSet<String> = gateway_args
            .iter()
            .find_map(|a| a.strip_prefix("--allowed-host="))
            .expect("--allowed-host")
            .split(',')
            .map(String::from)
            .collect();
        let svc = format!("{full}-gateway");
        for name in [
            svc.clone(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.cluster.local"),
        ] {
            assert!(hosts.contains(&name), "{name} not among {hosts:?}");
            assert!(
                hosts.contains(&format!("{name}:9500")),
                "{name}:9500 not among {hosts:?}"
            );
        }
        let service = find(&defaults, "Service", &svc);
        assert_eq!(service["spec"]["ports"][0]["port"], 9500);
        assert_eq!(
            service["spec"]["selector"]["app.kubernetes.io/component"],
            "gateway"
        );

        let agent_sa = find(&defaults, "ServiceAccount", &format!("{full}-agent"));
        assert_eq!(agent_sa["automountServiceAccountToken"], false);
        for crd in defaults
            .iter()
            .filter(|o| o["kind"] == "CustomResourceDefinition")
        {
            assert_eq!(
                crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
                "{}",
                crd["metadata"]["name"]
            );
        }

        let features = [
            "-f".to_string(),
            all_features_values(),
            "--set".to_string(),
            format!("operator.watchNamespace={ns},gateway.defaultNamespace={ns}"),
        ];
        let features: Vec<&str> = features.iter().map(String::as_str).collect();
        let all = validate(&ns, release, &features).await;
        for (kind, name) in [
            ("NetworkPolicy", format!("{full}-operator")),
            ("NetworkPolicy", format!("{full}-gateway")),
            ("ServiceMonitor", format!("{full}-operator")),
            ("ServiceMonitor", format!("{full}-gateway")),
            ("AgentBlueprint", "example".to_string()),
            ("Role", format!("{full}-operator")),
            ("Role", format!("{full}-agent")),
            ("RoleBinding", format!("{full}-agent")),
        ] {
            find(&all, kind, &name);
        }
        let ingress = find(&all, "Ingress", &format!("{full}-dashboard"));
        assert_eq!(
            ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"],
            "off"
        );
        let rule = &ingress["spec"]["rules"][0];
        assert_eq!(rule["host"], "agents.example.com");
        assert_eq!(
            rule["http"]["paths"][0]["backend"]["service"]["name"],
            format!("{full}-gateway")
        );
        let hosts = args(find(&all, "Deployment", &format!("{full}-gateway")));
        assert!(
            hosts
                .iter()
                .any(|a| a.starts_with("--allowed-host=") && a.contains("agents.example.com")),
            "the Ingress host is accepted on /mcp: {hosts:?}"
        );
        // dashboard.enabled=false turns /ui/ off in the gateway, and the Ingress with it.
        let off = helm_ok(&[
            "template",
            release,
            &chart(),
            "-n",
            &ns,
            "-f",
            &all_features_values(),
            "--set",
            "dashboard.enabled=false",
        ])
        .await;
        assert!(
            off.contains("\"--dashboard=false\""),
            "no --dashboard=false"
        );
        assert!(
            !off.contains("kind: Ingress"),
            "an Ingress without the dashboard"
        );
        assert!(
            !all.iter().any(|o| o["kind"] == "ClusterRole"
                && o["metadata"]["name"] == format!("{full}-operator")),
            "with watchNamespace the operator's rights are a Role, not a ClusterRole"
        );
        eprintln!(
            "server-side validation: {} objects (defaults), {} objects (every feature)",
            defaults.len(),
            all.len()
        );
    })
    .await;
}

async fn wait_available(client: &Client, ns: &str, name: &str, replicas: i32) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    wait_for(&api, name, TIMEOUT, move |d: Option<&Deployment>| {
        d.is_some_and(|d| {
            let spec = d.spec.as_ref().and_then(|s| s.replicas);
            let status = d.status.clone().unwrap_or_default();
            spec == Some(replicas)
                && status.observed_generation == d.metadata.generation
                && status.replicas == Some(replicas)
                && status.updated_replicas == Some(replicas)
                && status.available_replicas == Some(replicas)
        })
    })
    .await
    .expect("Deployment")
}

async fn running_pods(client: &Client, ns: &str, release: &str, component: &str) -> usize {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector =
        format!("app.kubernetes.io/instance={release},app.kubernetes.io/component={component}");
    pods.list(&ListParams::default().labels(&selector))
        .await
        .expect("list Pods")
        .items
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
        .count()
}

/// `helm install`, `helm upgrade`, `helm uninstall` on the local cluster, in a namespace that enforces the restricted
/// Pod Security profile: the Deployments' Pods are admitted and become available (kwok runs them), the upgrade
/// rolls out changed values and runs the example blueprint hook, and the uninstall removes every object, the
/// cluster-scoped RBAC included.
#[tokio::test]
async fn install_upgrade_uninstall() {
    with_temp_ns("chart-life", |client, ns| async move {
        install_crds(&client).await;
        restrict(&client, &ns).await;
        let release = unique("life");
        let full = fullname(&release);
        let chart = chart();
        let started = std::time::Instant::now();
        let body = async {
            // CRDs are the cluster's (installed above, as other tests share them): this release does not own them.
            helm_ok(&[
                "install",
                &release,
                &chart,
                "-n",
                &ns,
                "--set",
                "crds.install=false",
            ])
            .await;
            wait_available(&client, &ns, &format!("{full}-operator"), 2).await;
            wait_available(&client, &ns, &format!("{full}-gateway"), 2).await;
            assert_eq!(running_pods(&client, &ns, &release, "operator").await, 2);
            assert_eq!(running_pods(&client, &ns, &release, "gateway").await, 2);
            let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
            for sa in ["operator", "gateway", "agent"] {
                accounts
                    .get(&format!("{full}-{sa}"))
                    .await
                    .unwrap_or_else(|e| panic!("ServiceAccount {full}-{sa}: {e}"));
            }
            let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
            for c in ["operator", "gateway"] {
                pdbs.get(&format!("{full}-{c}")).await.expect("PDB");
            }
            let services: Api<Service> = Api::namespaced(client.clone(), &ns);
            services
                .get(&format!("{full}-gateway"))
                .await
                .expect("gateway Service");
            let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
            for c in ["operator", "gateway"] {
                cluster_roles
                    .get(&format!("{full}-{c}"))
                    .await
                    .expect("ClusterRole");
            }
            eprintln!("install: available after {:?}", started.elapsed());

            helm_ok(&[
                "upgrade",
                &release,
                &chart,
                "-n",
                &ns,
                "--reuse-values",
                "--set",
                "operator.replicas=3",
                "--set",
                "gateway.extraAllowedHosts={mcp.example.com}",
                "--set",
                "exampleBlueprint.enabled=true",
            ])
            .await;
            wait_available(&client, &ns, &format!("{full}-operator"), 3).await;
            let gateway = wait_available(&client, &ns, &format!("{full}-gateway"), 2).await;
            let gateway_args = gateway.spec.unwrap().template.spec.unwrap().containers[0]
                .args
                .clone()
                .unwrap_or_default();
            assert!(
                gateway_args
                    .iter()
                    .any(|a| a.starts_with("--allowed-host=") && a.ends_with(",mcp.example.com")),
                "the upgrade reached the gateway: {gateway_args:?}"
            );
            let blueprints = Api::<DynamicObject>::namespaced_with(
                client.clone(),
                &ns,
                &ApiResource::from_gvk_with_plural(
                    &kube::api::GroupVersionKind::gvk(
                        "agentorchestrator.dev",
                        "v1alpha1",
                        "AgentBlueprint",
                    ),
                    "agentblueprints",
                ),
            );
            blueprints
                .get("example")
                .await
                .expect("the example blueprint (post-upgrade hook)");
            let history = helm_ok(&["history", &release, "-n", &ns, "-o", "json"]).await;
            let history: Value = serde_json::from_str(&history).expect("helm history json");
            assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
            assert_eq!(history[1]["status"], "deployed", "{history}");
            eprintln!(
                "install + upgrade: rolled out after {:?}",
                started.elapsed()
            );

            helm_ok(&["uninstall", &release, "-n", &ns, "--wait"]).await;
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            for c in ["operator", "gateway"] {
                wait_for(
                    &deployments,
                    &format!("{full}-{c}"),
                    TIMEOUT,
                    |d: Option<&Deployment>| d.is_none(),
                )
                .await;
                wait_for(
                    &cluster_roles,
                    &format!("{full}-{c}"),
                    TIMEOUT,
                    |r: Option<&ClusterRole>| r.is_none(),
                )
                .await;
            }
            for sa in ["operator", "gateway", "agent"] {
                assert!(
                    accounts
                        .get_opt(&format!("{full}-{sa}"))
                        .await
                        .expect("get")
                        .is_none()
                );
            }
            assert!(
                !helm(&["status", &release, "-n", &ns]).await.ok,
                "the release is gone"
            );
            eprintln!("install + upgrade + uninstall: {:?}", started.elapsed());
        };
        finally(body, uninstall_quietly(&ns, &release)).await;
    })
    .await;
}

/// The CRD approach: the chart renders its CRDs as templates, so a `helm upgrade` whose chart adds a field to a CRD
/// makes the API server keep that field (before the upgrade it is pruned), and `helm uninstall` leaves the CRDs in
/// place. The test uses a copy of the chart whose CRDs are renamed into a group of their own, so that it never
/// touches the CRDs the other tests share.
#[tokio::test]
async fn helm_upgrade_updates_the_crds() {
    with_temp_ns("chart-crd", |client, ns| async move {
        let dir = TempDir::new("chart-crd");
        let chart = dir.0.join("chart");
        copy_dir(&chart_dir(), &chart);
        let group = format!("{}.chart-test.dev", unique("g"));
        let crd_files = chart.join("files/crds");
        for entry in std::fs::read_dir(&crd_files).expect("crd folder") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("crd");
            std::fs::write(&path, text.replace("agentorchestrator.dev", &group)).expect("write crd");
        }
        let release = unique("crd");
        let chart_arg = chart.to_string_lossy().into_owned();
        let crd_names: Vec<String> = ["agentjobs", "agentsessions", "agentblueprints"]
            .iter()
            .map(|p| format!("{p}.{group}"))
            .collect();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());

        let body = async {
            helm_ok(&[
                "install", &release, &chart_arg, "-n", &ns,
                "--set", "operator.replicas=0,gateway.replicas=0",
            ])
            .await;
            for name in &crd_names {
                let crd = wait_for(&crds, name, TIMEOUT, kube::runtime::wait::conditions::is_crd_established())
                    .await
                    .expect("CRD");
                assert_eq!(
                    crd.annotations().get("meta.helm.sh/release-name"),
                    Some(&release),
                    "{name} belongs to the release"
                );
                assert_eq!(
                    crd.annotations().get("helm.sh/resource-policy").map(String::as_str),
                    Some("keep")
                );
            }
            let blueprints = Api::<DynamicObject>::namespaced_with(
                client.clone(),
                &ns,
                &ApiResource::from_gvk_with_plural(
                    &kube::api::GroupVersionKind::gvk(&group, "v1alpha1", "AgentBlueprint"),
                    "agentblueprints",
                ),
            );
            let blueprint = |name: &str| -> DynamicObject {
                serde_json::from_value(json!({
                    "apiVersion": format!("{group}/v1alpha1"),
                    "kind": "AgentBlueprint",
                    "metadata": {"name": name},
                    "spec": {"description": "chart test", "chartTestNote": "kept after the upgrade"},
                }))
                .expect("blueprint")
            };
            let before = blueprints
                .create(&PostParams::default(), &blueprint("before"))
                .await
                .expect("create blueprint");
            assert!(
                before.data["spec"].get("chartTestNote").is_none(),
                "before the upgrade the field is unknown and pruned: {:?}",
                before.data
            );

            // The next chart version adds spec.chartTestNote to AgentBlueprint (JSON is YAML to Helm's fromYaml).
            let name = format!("agentblueprints.{group}");
            let served = crds.get(&name).await.expect("CRD");
            let mut spec = serde_json::to_value(&served.spec).expect("spec");
            for version in spec["versions"].as_array_mut().expect("versions") {
                version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["chartTestNote"] =
                    json!({"type": "string", "description": "added by a chart upgrade"});
            }
            let next = json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": name},
                "spec": spec,
            });
            std::fs::write(
                crd_files.join("agentblueprints.yaml"),
                serde_json::to_string_pretty(&next).expect("json"),
            )
            .expect("write the next CRD");
            helm_ok(&["upgrade", &release, &chart_arg, "-n", &ns, "--reuse-values"]).await;

            wait_for(&crds, &name, TIMEOUT, |c: Option<&CustomResourceDefinition>| {
                c.is_some_and(|c| {
                    c.spec.versions.iter().all(|v| {
                        v.schema
                            .as_ref()
                            .and_then(|s| s.open_api_v3_schema.as_ref())
                            .and_then(|s| s.properties.as_ref())
                            .and_then(|p| p.get("spec"))
                            .and_then(|s| s.properties.as_ref())
                            .is_some_and(|p| p.contains_key("chartTestNote"))
                    })
                })
            })
            .await;
            // The API server serves the new schema a moment after the CRD object changed: wait for it.
            let after = eventually("the upgraded CRD schema to be served", TIMEOUT, || {
                let blueprints = blueprints.clone();
                let object = blueprint(&unique("after"));
                async move {
                    let created = blueprints.create(&PostParams::default(), &object).await.expect("create");
                    let kept = created.data["spec"]["chartTestNote"] == "kept after the upgrade";
                    kept.then_some(created)
                }
            })
            .await;
            eprintln!("after the upgrade {} kept the new field", after.name_any());

            helm_ok(&["uninstall", &release, "-n", &ns, "--wait"]).await;
            for name in &crd_names {
                assert!(
                    crds.get_opt(name).await.expect("get CRD").is_some(),
                    "{name} is kept by helm uninstall"
                );
            }
            assert!(
                blueprints.get_opt(&after.name_any()).await.expect("get").is_some(),
                "objects survive the uninstall with their CRD"
            );
        };
        let cleanup = async {
            uninstall_quietly(&ns, &release).await;
            for name in &crd_names {
                let _ = crds.delete(name, &DeleteParams::default()).await;
            }
        };
        finally(body, cleanup).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// RBAC matrix.

const VERBS: [&str; 8] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

const AO: &str = "agentorchestrator.dev";

/// Namespaced resources asked about: everything the components touch, and what they must not.
const NAMESPACED: &[(&str, &str, Option<&str>)] = &[
    (AO, "agentjobs", None),
    (AO, "agentjobs", Some("status")),
    (AO, "agentjobs", Some("finalizers")),
    (AO, "agentsessions", None),
    (AO, "agentsessions", Some("status")),
    (AO, "agentsessions", Some("finalizers")),
    (AO, "agentblueprints", None),
    (AO, "agentblueprints", Some("status")),
    ("", "pods", None),
    ("", "pods", Some("exec")),
    ("", "pods", Some("attach")),
    ("", "pods", Some("portforward")),
    ("", "pods", Some("log")),
    ("", "pods", Some("status")),
    ("", "pods", Some("eviction")),
    ("", "pods", Some("ephemeralcontainers")),
    ("", "secrets", None),
    ("", "configmaps", None),
    ("", "serviceaccounts", None),
    ("", "serviceaccounts", Some("token")),
    ("", "services", None),
    ("", "endpoints", None),
    ("", "persistentvolumeclaims", None),
    ("", "events", None),
    ("events.k8s.io", "events", None),
    ("coordination.k8s.io", "leases", None),
    ("apps", "deployments", None),
    ("apps", "replicasets", None),
    ("apps", "statefulsets", None),
    ("apps", "daemonsets", None),
    ("batch", "jobs", None),
    ("networking.k8s.io", "networkpolicies", None),
    ("policy", "poddisruptionbudgets", None),
    ("rbac.authorization.k8s.io", "roles", None),
    ("rbac.authorization.k8s.io", "rolebindings", None),
];

const CLUSTER: &[(&str, &str)] = &[
    ("", "namespaces"),
    ("", "nodes"),
    ("", "persistentvolumes"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("authentication.k8s.io", "tokenreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    ),
    ("certificates.k8s.io", "certificatesigningrequests"),
];

/// Where a granted right applies.
#[derive(Clone, Copy)]
enum Scope {
    /// In every namespace, and across all of them (ClusterRole).
    Everywhere,
    /// Only in this namespace (Role).
    In(&'static str),
    /// A cluster-scoped resource.
    Cluster,
}

/// One intended right: (group, resource, subresource, verbs, scope).
type Grant = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static [&'static str],
    Scope,
);

/// Placeholder for the namespace a Role is in, substituted when asking.
const RELEASE_NS: &str = "<release>";

const OPERATOR: &[Grant] = &[
    (
        AO,
        "agentjobs",
        None,
        &["get", "list", "watch", "create", "patch", "delete"],
        Scope::Everywhere,
    ),
    (
        AO,
        "agentsessions",
        None,
        &["get", "list", "watch", "create", "patch"],
        Scope::Everywhere,
    ),
    (
        AO,
        "agentblueprints",
        None,
        &["get", "list", "watch"],
        Scope::Everywhere,
    ),
    (
        AO,
        "agentjobs",
        Some("status"),
        &["patch"],
        Scope::Everywhere,
    ),
    (
        AO,
        "agentsessions",
        Some("status"),
        &["patch"],
        Scope::Everywhere,
    ),
    (
        AO,
        "agentjobs",
        Some("finalizers"),
        &["update"],
        Scope::Everywhere,
    ),
    (
        AO,
        "agentsessions",
        Some("finalizers"),
        &["update"],
        Scope::Everywhere,
    ),
    (
        "",
        "pods",
        None,
        &["get", "list", "watch", "create", "delete"],
        Scope::Everywhere,
    ),
    (
        "",
        "persistentvolumeclaims",
        None,
        &["get", "create"],
        Scope::Everywhere,
    ),
    (
        "events.k8s.io",
        "events",
        None,
        &["create", "patch"],
        Scope::Everywhere,
    ),
    (
        "coordination.k8s.io",
        "leases",
        None,
        &["create"],
        Scope::In(RELEASE_NS),
    ),
];

const GATEWAY: &[Grant] = &[
    (
        AO,
        "agentsessions",
        None,
        &["list", "watch", "delete"],
        Scope::Everywhere,
    ),
    (
        AO,
        "agentjobs",
        None,
        &["list", "watch", "create", "delete"],
        Scope::Everywhere,
    ),
    (
        AO,
        "agentblueprints",
        None,
        &["list", "watch"],
        Scope::Everywhere,
    ),
    (
        AO,
        "agentjobs",
        Some("status"),
        &["patch"],
        Scope::Everywhere,
    ),
    (
        "",
        "pods",
        None,
        &["get", "list", "watch"],
        Scope::Everywhere,
    ),
    (
        "authentication.k8s.io",
        "tokenreviews",
        None,
        &["create"],
        Scope::Cluster,
    ),
    (
        "authorization.k8s.io",
        "subjectaccessreviews",
        None,
        &["create"],
        Scope::Cluster,
    ),
    (
        "events.k8s.io",
        "events",
        None,
        &["create", "patch"],
        Scope::Everywhere,
    ),
    // The dashboard.
    ("", "pods", Some("log"), &["get"], Scope::Everywhere),
    ("", "events", None, &["list"], Scope::Everywhere),
];

const AGENT: &[Grant] = &[];

fn intended(grants: &[Grant], release_ns: &str, a: &Access) -> bool {
    grants.iter().any(|(group, resource, sub, verbs, scope)| {
        let in_scope = match scope {
            Scope::Everywhere => true,
            Scope::Cluster => a.namespace.is_none(),
            Scope::In(ns) => {
                let ns = if *ns == RELEASE_NS { release_ns } else { ns };
                a.namespace.as_deref() == Some(ns)
            }
        };
        in_scope
            && a.group == *group
            && a.resource == *resource
            && a.subresource.as_deref() == *sub
            && verbs.contains(&a.verb.as_str())
    })
}

/// Every question of the matrix: each namespaced resource in the release namespace, in another one and across all,
/// each cluster-scoped resource, with every verb.
fn matrix(release_ns: &str) -> Vec<Access> {
    let mut all = Vec::new();
    for verb in VERBS {
        for (group, resource, sub) in NAMESPACED {
            for namespace in [
                Some(release_ns.to_string()),
                Some("elsewhere".to_string()),
                None,
            ] {
                all.push(Access {
                    namespace,
                    group: group.to_string(),
                    resource: resource.to_string(),
                    subresource: sub.map(String::from),
                    name: None,
                    verb: verb.to_string(),
                });
            }
        }
        for (group, resource) in CLUSTER {
            all.push(Access {
                namespace: None,
                group: group.to_string(),
                resource: resource.to_string(),
                subresource: None,
                name: None,
                verb: verb.to_string(),
            });
        }
    }
    all
}

fn access(ns: Option<&str>, group: &str, resource: &str, name: Option<&str>, verb: &str) -> Access {
    Access {
        namespace: ns.map(String::from),
        group: group.into(),
        resource: resource.into(),
        subresource: None,
        name: name.map(String::from),
        verb: verb.into(),
    }
}

/// Asks every question for `sa` and returns the answers that differ from the intended ones.
async fn deviations(
    client: &Client,
    ns: &str,
    sa: &str,
    questions: Vec<(Access, bool)>,
) -> Vec<String> {
    let answers: Vec<(Access, bool, bool)> = futures::stream::iter(questions)
        .map(|(a, want)| async move {
            let got = may(client, ns, sa, &a).await;
            (a, want, got)
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut wrong: Vec<String> = answers
        .into_iter()
        .filter(|(_, want, got)| want != got)
        .map(|(a, want, _)| {
            if want {
                format!("{sa} may not {a}, but needs to")
            } else {
                format!("{sa} may {a}, beyond its intended rights")
            }
        })
        .collect();
    wrong.sort();
    wrong
}

/// The RBAC matrix: the API server's answer for each ServiceAccount of the chart, for every verb on the project's
/// kinds and their subresources, Pods and theirs, Secrets, ConfigMaps, workloads, RBAC, Nodes, CRDs and more, in the
/// release namespace, another namespace and cluster-wide, is exactly the intended list: the operator's and the
/// gateway's calls, nothing for agent Pods. The Lease right is limited to the one Lease, and with
/// operator.watchNamespace the operator's rights stop at that namespace.
#[tokio::test]
async fn service_accounts_may_do_exactly_what_they_need() {
    with_temp_ns("chart-rbac", |client, ns| async move {
        let release = unique("rbac");
        let scoped = unique("scoped");
        let full = fullname(&release);
        let chart = chart();
        let body = async {
            helm_ok(&[
                "install", &release, &chart, "-n", &ns,
                "--set", "crds.install=false,operator.replicas=0,gateway.replicas=0",
            ])
            .await;
            helm_ok(&[
                "install", &scoped, &chart, "-n", &ns,
                "--set", &format!("crds.install=false,operator.replicas=0,gateway.replicas=0,operator.watchNamespace={ns}"),
            ])
            .await;
            let lease = format!("{full}-operator-leader");
            let scoped_lease = format!("{}-operator-leader", fullname(&scoped));
            // The authorizer learns of new bindings through a watch: wait until the last of each is in effect.
            for (sa, a) in [
                (format!("{full}-operator"), access(None, AO, "agentjobs", None, "list")),
                (format!("{full}-operator"), access(Some(&ns), "coordination.k8s.io", "leases", None, "create")),
                (format!("{full}-gateway"), access(None, "authentication.k8s.io", "tokenreviews", None, "create")),
                (format!("{}-operator", fullname(&scoped)), access(Some(&ns), AO, "agentjobs", None, "list")),
            ] {
                eventually(&format!("{sa} may {a}"), TIMEOUT, || {
                    let (client, ns, sa, a) = (client.clone(), ns.clone(), sa.clone(), a.clone());
                    async move { may(&client, &ns, &sa, &a).await.then_some(()) }
                })
                .await;
            }

            let started = std::time::Instant::now();
            let mut wrong = Vec::new();
            let mut asked = 0;
            for (component, grants) in [("operator", OPERATOR), ("gateway", GATEWAY), ("agent", AGENT)] {
                let mut questions: Vec<(Access, bool)> = matrix(&ns)
                    .into_iter()
                    .map(|a| {
                        let want = intended(grants, &ns, &a);
                        (a, want)
                    })
                    .collect();
                if component == "operator" {
                    // The Lease: read and patch that one, in the release namespace; nothing else.
                    for verb in VERBS {
                        // RBAC cannot limit create by name: creating is allowed for any Lease of the namespace.
                        let want = matches!(verb, "get" | "patch" | "create");
                        questions.push((access(Some(&ns), "coordination.k8s.io", "leases", Some(&lease), verb), want));
                        questions.push((access(Some(&ns), "coordination.k8s.io", "leases", Some("another-lease"), verb), verb == "create"));
                        questions.push((access(Some("elsewhere"), "coordination.k8s.io", "leases", Some(&lease), verb), false));
                    }
                }
                asked += questions.len();
                wrong.extend(deviations(&client, &ns, &format!("{full}-{component}"), questions).await);
            }

            // operator.watchNamespace: the same rights, only in that namespace.
            let scoped_operator = format!("{}-operator", fullname(&scoped));
            let questions: Vec<(Access, bool)> = matrix(&ns)
                .into_iter()
                .filter(|a| {
                    a.group == AO
                        || ["pods", "persistentvolumeclaims", "events", "leases"].contains(&a.resource.as_str())
                })
                .map(|a| {
                    let want = a.namespace.as_deref() == Some(ns.as_str()) && intended(OPERATOR, &ns, &a);
                    (a, want)
                })
                .chain([
                    (access(Some(&ns), "coordination.k8s.io", "leases", Some(&scoped_lease), "patch"), true),
                    (access(Some(&ns), "coordination.k8s.io", "leases", Some(&lease), "patch"), false),
                ])
                .collect();
            asked += questions.len();
            wrong.extend(deviations(&client, &ns, &scoped_operator, questions).await);
            eprintln!("RBAC matrix: {asked} SubjectAccessReviews in {:?}", started.elapsed());
            assert!(wrong.is_empty(), "RBAC differs from the intended rights:\n{}", wrong.join("\n"));
        };
        let cleanup = async {
            uninstall_quietly(&ns, &release).await;
            uninstall_quietly(&ns, &scoped).await;
        };
        finally(body, cleanup).await;
    })
    .await;
}
