//! `schema.graphql` is generated from the code and documented throughout.

use serde_json::json;

use crate::helpers::{Backend, spawn_app};

#[test]
fn schema_graphql_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let generated = union360::graphql::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema.graphql is out of date: run `UPDATE_SCHEMA=1 cargo test --test api schema` (or `union360 schema > schema.graphql`) and commit it"
    );
}

#[tokio::test]
async fn every_type_field_and_argument_is_described() {
    let app = spawn_app(Backend::Sqlite).await;
    let data = app
        .data(
            "{ __schema { types { name kind description
                fields { name description args { name description } }
                inputFields { name description }
                enumValues { name description } } } }",
            json!({}),
        )
        .await;
    let builtin = ["String", "Int", "Float", "Boolean", "ID"];
    let mut missing = Vec::new();
    for ty in data["__schema"]["types"].as_array().unwrap() {
        let name = ty["name"].as_str().unwrap();
        if name.starts_with("__") || builtin.contains(&name) {
            continue;
        }
        let described =
            |v: &serde_json::Value| v["description"].as_str().is_some_and(|d| !d.is_empty());
        if !described(ty) {
            missing.push(name.to_owned());
        }
        for list in ["fields", "inputFields", "enumValues"] {
            for item in ty[list].as_array().into_iter().flatten() {
                let item_name = item["name"].as_str().unwrap();
                if !described(item) {
                    missing.push(format!("{name}.{item_name}"));
                }
                for arg in item["args"].as_array().into_iter().flatten() {
                    if !described(arg) {
                        missing.push(format!("{name}.{item_name}({})", arg["name"]));
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "undocumented: {missing:?}");
}

#[tokio::test]
async fn deep_introspection_for_playgrounds_and_codegen_is_within_limits() {
    // Tools such as GraphiQL and code generators unwrap type references
    // (`[Person!]!` and deeper) with nested `ofType` selections.
    let app = spawn_app(Backend::Sqlite).await;
    let type_ref = "kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }";
    let query = format!(
        "query IntrospectionQuery {{ __schema {{ types {{ name fields(includeDeprecated: true) {{ name args {{ name type {{ {type_ref} }} }} type {{ {type_ref} }} }} }} }} }}"
    );
    let data = app.data(&query, json!({})).await;
    assert!(data["__schema"]["types"].as_array().unwrap().len() > 10);
}
