//! `reconcile graph` on the example desired state.

use crate::support::{assert_golden, reconcile, text};

#[test]
fn example_graph_dot_is_golden_and_shows_cross_system_and_promotion_edges() {
    let out = reconcile(&["graph", "--format", "dot"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let dot = text(&out.stdout);
    assert!(dot.contains(r#""gitlab.variable/root/inventory-app/AWS_SECRET_ACCESS_KEY@*" -> "aws.secret/cloud-design/gitlab-pipeline-user" [label="secret", color=blue]"#));
    assert!(dot.contains(r#""aws.ecs_service/production/inventory-app" -> "aws.ecs_service/staging/inventory-app" [label="promotion", color=red, style=dashed]"#));
    assert!(dot.contains(
        r#""aws.ecs_task_definition/staging/inventory-app" -> "aws.ecr_image/inventory-app:1.4.2""#
    ));
    assert_golden("graph/example.dot", &dot);
}

#[test]
fn example_graph_json_orders_dependencies_first() {
    let out = reconcile(&["graph", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let waves = json["apply_order"].as_array().unwrap();
    let wave_of = |address: &str| {
        waves
            .iter()
            .position(|w| w.as_array().unwrap().iter().any(|a| a == address))
            .unwrap()
    };
    for edge in json["edges"].as_array().unwrap() {
        let (from, to) = (edge["from"].as_str().unwrap(), edge["to"].as_str().unwrap());
        assert!(
            wave_of(to) < wave_of(from),
            "{from} depends on {to} but is not after it"
        );
    }
    assert!(
        wave_of("aws.ecs_service/staging/billing-app")
            < wave_of("aws.ecs_service/production/billing-app")
    );
}
