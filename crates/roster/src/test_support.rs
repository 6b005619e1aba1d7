//! What the library's unit tests share: a deployment of two paired pools.

use roster_topology::Deployment;

/// Pools `east` (id 1, nodes 1–3, 3 routing groups) and `west` (id 2, nodes 4–6, 2 groups),
/// paired, in two sites; the CMS on pool `cms`.
pub fn paired_deployment(cms: &str) -> Deployment {
    let mut text = format!(
        "[deployment]\nname = \"t\"\ncms = \"{cms}\"\n[[site]]\nname = \"a\"\n[[site]]\nname = \"b\"\n\
         [[pool]]\nid = 1\nname = \"east\"\nsite = \"a\"\ngroups = 3\n\
         [[pool]]\nid = 2\nname = \"west\"\nsite = \"b\"\ngroups = 2\n\
         [[pair]]\npools = [\"east\", \"west\"]\n"
    );
    for id in 1..=6 {
        let pool = if id <= 3 { "east" } else { "west" };
        text.push_str(&format!(
            "[[node]]\nid = {id}\npool = \"{pool}\"\ncluster = \"127.0.0.1:{}\"\n",
            7000 + id
        ));
    }
    Deployment::parse(&text).expect("valid deployment")
}
