use super::*;

const TWO_SITES: &str = r#"
[deployment]
name = "acme"
cms = "a"

[[site]]
name = "dc1"

[[site]]
name = "dc2"

[[pool]]
id = 1
name = "a"
site = "dc1"

[[pool]]
id = 2
name = "b"
site = "dc2"
groups = 8

[[pair]]
pools = ["a", "b"]

[[node]]
id = 1
pool = "a"
cluster = "127.0.0.1:7001"

[[node]]
id = 2
pool = "a"
cluster = "127.0.0.1:7002"

[[node]]
id = 3
pool = "a"
cluster = "127.0.0.1:7003"

[[node]]
id = 4
pool = "b"
cluster = "127.0.0.1:7004"
wan = "127.0.0.2:7004"

[[node]]
id = 5
pool = "b"
cluster = "127.0.0.1:7005"

[[node]]
id = 6
pool = "b"
cluster = "127.0.0.1:7006"
"#;

#[test]
fn a_two_site_deployment_parses_and_answers() {
    let deployment = Deployment::parse(TWO_SITES).expect("valid");
    assert_eq!(deployment.pool(1).map(|p| p.groups), Some(GROUPS_DEFAULT));
    assert_eq!(deployment.pool(2).map(|p| p.groups), Some(8));
    assert_eq!(deployment.partner(1), Some(2));
    assert_eq!(deployment.partner(2), Some(1));
    assert_eq!(deployment.cms_pool(), 1);
    assert_eq!(deployment.node_ids_of(2), [4, 5, 6]);
    assert_eq!(deployment.pool_of(5), Some(2));
    let node = deployment.node(4).expect("node 4");
    assert_eq!(
        node.wan_address(),
        "127.0.0.2:7004".parse().expect("address")
    );
    let reparsed = Deployment::parse(&deployment.to_toml().expect("toml")).expect("round trip");
    assert_eq!(reparsed, deployment);
}

#[test]
fn one_pool_without_a_pair_is_a_deployment() {
    let one = TWO_SITES
        .split("[[pool]]\nid = 2")
        .next()
        .expect("first part")
        .to_string()
        + "[[node]]\nid = 1\npool = \"a\"\ncluster = \"127.0.0.1:7001\"\n\
           [[node]]\nid = 2\npool = \"a\"\ncluster = \"127.0.0.1:7002\"\n\
           [[node]]\nid = 3\npool = \"a\"\ncluster = \"127.0.0.1:7003\"\n";
    let deployment = Deployment::parse(&one).expect("valid");
    assert_eq!(deployment.partner(1), None);
    assert_eq!(deployment.cms_pool(), 1);
}

#[test]
fn problems_are_named() {
    let cases = [
        (
            TWO_SITES.replace("id = 6", "id = 5"),
            "node id 5 appears twice",
        ),
        (TWO_SITES.replace("7006", "7005"), "appears twice"),
        (
            TWO_SITES.replace("id = 1\npool", "id = 0\npool"),
            "reserved",
        ),
        (
            TWO_SITES.replace("id = 2\nname", "id = 1\nname"),
            "pool id 1 appears twice",
        ),
        (TWO_SITES.replace("groups = 8", "groups = 0"), "groups = 0"),
        (
            TWO_SITES.replace("site = \"dc2\"", "site = \"dc1\""),
            "a pair spans two sites",
        ),
        (
            TWO_SITES.replace("site = \"dc2\"", "site = \"dc9\""),
            "not a [[site]]",
        ),
        (
            TWO_SITES.replace("pools = [\"a\", \"b\"]", "pools = [\"a\", \"a\"]"),
            "itself",
        ),
        (
            TWO_SITES.replace("pools = [\"a\", \"b\"]", "pools = [\"a\", \"c\"]"),
            "not a [[pool]]",
        ),
        (
            TWO_SITES.replace("cms = \"a\"", "cms = \"z\""),
            "deployment.cms",
        ),
        (
            TWO_SITES.replace("name = \"acme\"", "name = \"a b\""),
            "letters, digits",
        ),
        (
            TWO_SITES.replace(
                "[[node]]\nid = 6\npool = \"b\"\ncluster = \"127.0.0.1:7006\"\n",
                "",
            ),
            "pool \"b\" 2",
        ),
        (
            TWO_SITES.replace(
                "pool = \"b\"\ncluster = \"127.0.0.1:7005\"",
                "pool = \"c\"\ncluster = \"127.0.0.1:7005\"",
            ),
            "not a [[pool]]",
        ),
        (
            TWO_SITES.replace(
                "cluster = \"127.0.0.1:7001\"",
                "clustre = \"127.0.0.1:7001\"",
            ),
            "unknown field",
        ),
        (
            TWO_SITES.to_string() + "\n[[pair]]\npools = [\"b\", \"a\"]\n",
            "two pairs",
        ),
    ];
    for (text, expected) in cases {
        let error = Deployment::parse(&text).expect_err(expected).to_string();
        assert!(error.contains(expected), "{expected}: {error}");
    }
}

/// [`TWO_SITES`] with a third site and a witness in it (`extra` lines appended to its table).
fn with_witness(extra: &str) -> String {
    format!(
        "{TWO_SITES}\n[[site]]\nname = \"dc3\"\n\n[witness]\nid = 100\nsite = \"dc3\"\n\
         address = \"127.0.0.3:7100\"\npools = [\"a\", \"b\"]\n{extra}"
    )
}

#[test]
fn a_witness_in_a_third_site_watches_a_pair() {
    let deployment = Deployment::parse(&with_witness("")).expect("valid");
    let witness = deployment.witness_of(1).expect("a's witness");
    assert_eq!(witness.id, 100);
    assert_eq!(deployment.witness_of(2).map(|w| w.id), Some(100));
    let reparsed = Deployment::parse(&deployment.to_toml().expect("toml")).expect("round trip");
    assert_eq!(reparsed, deployment);
    assert!(Deployment::parse(TWO_SITES)
        .expect("valid")
        .witness_of(1)
        .is_none());
}

#[test]
fn a_witness_out_of_place_is_named() {
    let cases = [
        (
            with_witness("").replace("id = 100", "id = 4"),
            "no node's id",
        ),
        (
            with_witness("").replace("site = \"dc3\"\naddress", "site = \"dc1\"\naddress"),
            "third site",
        ),
        (
            with_witness("").replace("site = \"dc3\"\naddress", "site = \"dc9\"\naddress"),
            "not a [[site]]",
        ),
        (
            with_witness("").replace("127.0.0.3:7100", "127.0.0.1:7001"),
            "cluster address",
        ),
        (
            with_witness("").replace("pools = [\"a\", \"b\"]\n", "pools = [\"a\", \"c\"]\n"),
            "not a [[pool]]",
        ),
    ];
    for (text, expected) in cases {
        let error = Deployment::parse(&text).expect_err(expected).to_string();
        assert!(error.contains(expected), "{error} lacks {expected:?}");
    }
}
