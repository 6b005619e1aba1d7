//! Where the demo puts everything, computed from its options alone: its pools (one, or two in
//! two sites, paired), the users homed on each, and every node's addresses.
//!
//! Two sites: node N on its own loopback address, `--sip`'s address plus N-1 (127.0.0.1 …
//! 127.0.0.6 by default), every node on the same ports: SIP UDP and TCP at `--sip`'s port,
//! TLS one above, its cluster transport 1000 above, and with a WAN latency the relay's front
//! for it (its `wan` address, what the other site dials) 1010 above; its HTTP at `--http`'s
//! address plus N-1 and `--http`'s port (or any free port with `--http ADDR:0`). Nodes 1–3
//! are the first pool's (site dc1), 4–6 the second's (dc2). With `--witness`, the witness
//! (id 100, site dc3) on the address after node 6's (127.0.0.7), QUIC at the nodes' cluster
//! port, HTTP at `--http`'s port on the HTTP address after node 6's.
//!
//! One site (`--sites 1`, what the benchmarks run): every node on `--sip`'s address, node N's
//! SIP UDP and TCP at SIP + 2(N-1), its TLS one above, its cluster transport at SIP + 1000 + N,
//! its HTTP at HTTP + (N-1).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;

use super::relay::Route;
use super::{DemoOptions, DEMO_USERS};

/// Nodes of each demo pool.
pub const NODES_PER_POOL: u64 = 3;

/// Sites (and pools) a demo may have: one pool, or two paired pools in two sites.
pub const SITES_MAX: u8 = 2;

/// Offset of a node's cluster port from its SIP port (two sites), or of node 1's cluster port
/// from node 1's SIP port before adding N (one site).
const CLUSTER_PORT_OFFSET: u16 = 1000;

/// Offset of a node's WAN relay front from its SIP port (two sites only): above every cluster
/// port of the one-site layout too.
const WAN_PORT_OFFSET: u16 = 1010;

// The one-site layout's cluster ports stay below the fronts' port.
const _: () = assert!(CLUSTER_PORT_OFFSET as u64 + NODES_PER_POOL < WAN_PORT_OFFSET as u64);

/// The highest port offset from `--sip`'s port a demo uses, so that `--sip` can be checked.
pub const PORT_OFFSET_MAX: u16 = WAN_PORT_OFFSET;

/// The highest last byte of `--sip`'s or `--http`'s address with two sites: node 6 takes it
/// plus 5, and .255 is the subnet's broadcast address on most machines.
pub const TWO_SITES_LAST_BYTE_MAX: u8 = 254 - (NODES_PER_POOL as u8) * SITES_MAX + 1;

/// The id of the demo's witness: no node's (nodes are 1 to 6).
pub const WITNESS_ID: u64 = 100;

/// The site of the demo's witness: neither pool's.
pub const WITNESS_SITE: &str = "dc3";

/// The demo's pools and nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// One or two pools, the CMS's first.
    pub pools: Vec<PoolPlan>,
    /// The witness, with `--witness` (two sites).
    pub witness: Option<WitnessPlan>,
}

/// The demo's witness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WitnessPlan {
    /// Its id.
    pub id: u64,
    /// Its site.
    pub site: &'static str,
    /// Its QUIC address, which every node dials directly (not through the WAN relay).
    pub address: SocketAddr,
    /// Its HTTP address (`roster witness status --http`; port 0: any free port).
    pub http: SocketAddr,
}

/// One pool of the demo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolPlan {
    /// Its id in the deployment.
    pub id: u64,
    /// Its name.
    pub name: &'static str,
    /// Its site's name.
    pub site: &'static str,
    /// The numbers of the demo users homed on it (`u{n}`).
    pub users: RangeInclusive<usize>,
    /// Its nodes, ascending.
    pub nodes: Vec<NodePlan>,
}

/// One node of the demo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodePlan {
    /// Its id.
    pub id: u64,
    /// SIP over UDP and TCP; TLS on the next port.
    pub sip: SocketAddr,
    /// Its cluster transport (QUIC).
    pub cluster: SocketAddr,
    /// What the other site dials for it (the relay's front), with a WAN latency.
    pub wan: Option<SocketAddr>,
    /// Its HTTP listener (port 0: any free port).
    pub http: SocketAddr,
}

impl Layout {
    /// The layout of `options`.
    pub fn of(options: &DemoOptions) -> Layout {
        let two_sites = options.sites > 1;
        let relayed = two_sites && !options.wan_latency.is_zero();
        let names: &[(&'static str, &'static str)] = if options.sites > 1 {
            &[("a", "dc1"), ("b", "dc2")]
        } else {
            // Today's one-pool demo, as benchmarks know it.
            &[("demo", "site1")]
        };
        let pools = names.len();
        let pools = names
            .iter()
            .enumerate()
            .map(|(index, &(name, site))| {
                let first_user = DEMO_USERS * index / pools;
                let last_user = DEMO_USERS * (index + 1) / pools - 1;
                let id = index as u64 + 1;
                let nodes = (1..=NODES_PER_POOL)
                    .map(|n| {
                        node(
                            options,
                            index as u64 * NODES_PER_POOL + n,
                            two_sites,
                            relayed,
                        )
                    })
                    .collect();
                PoolPlan {
                    id,
                    name,
                    site,
                    users: first_user..=last_user,
                    nodes,
                }
            })
            .collect();
        let witness_index = u64::from(SITES_MAX) * NODES_PER_POOL + 1;
        let witness = (two_sites && options.witness).then(|| WitnessPlan {
            id: WITNESS_ID,
            site: WITNESS_SITE,
            address: SocketAddr::new(
                nth_address(options.sip.ip(), witness_index),
                options.sip.port() + CLUSTER_PORT_OFFSET,
            ),
            http: SocketAddr::new(
                nth_address(options.http.ip(), witness_index),
                options.http.port(),
            ),
        });
        Layout { pools, witness }
    }

    /// Every node, ascending by id.
    pub fn nodes(&self) -> impl Iterator<Item = &NodePlan> {
        self.pools.iter().flat_map(|pool| &pool.nodes)
    }

    /// The pool of node `id`.
    pub fn pool_of(&self, id: u64) -> Option<&PoolPlan> {
        self.pools
            .iter()
            .find(|pool| pool.nodes.iter().any(|node| node.id == id))
    }

    /// The pool user `u{number}` is homed on.
    pub fn home_of(&self, number: usize) -> Option<&PoolPlan> {
        self.pools.iter().find(|pool| pool.users.contains(&number))
    }

    /// The other pool of a pair.
    pub fn partner_of(&self, pool: &PoolPlan) -> Option<&PoolPlan> {
        (self.pools.len() == 2).then(|| self.pools.iter().find(|other| other.id != pool.id))?
    }

    /// The pool the CMS lives on: the first.
    pub fn cms_pool(&self) -> Option<&PoolPlan> {
        self.pools.first()
    }

    /// The relay's routes: every node's front to its cluster address (none without a latency).
    pub fn relay_routes(&self) -> Vec<Route> {
        self.nodes()
            .filter_map(|node| {
                node.wan.map(|front| Route {
                    front,
                    target: node.cluster,
                })
            })
            .collect()
    }

    /// The deployment's topology, which `roster init` reads.
    pub fn topology(&self, groups: u32) -> String {
        let mut text = String::from("[deployment]\nname = \"demo\"\n");
        if self.pools.len() > 1 {
            if let Some(cms) = self.cms_pool() {
                let _ = writeln!(text, "cms = \"{}\"", cms.name);
            }
        }
        for pool in &self.pools {
            let _ = write!(text, "\n[[site]]\nname = \"{}\"\n", pool.site);
        }
        if let Some(witness) = &self.witness {
            let _ = write!(text, "\n[[site]]\nname = \"{}\"\n", witness.site);
        }
        for pool in &self.pools {
            let _ = write!(
                text,
                "\n[[pool]]\nid = {}\nname = \"{}\"\nsite = \"{}\"\ngroups = {groups}\n",
                pool.id, pool.name, pool.site
            );
        }
        if let [first, second] = self.pools.as_slice() {
            let _ = write!(
                text,
                "\n[[pair]]\npools = [\"{}\", \"{}\"]\n",
                first.name, second.name
            );
        }
        for pool in &self.pools {
            for node in &pool.nodes {
                let _ = write!(
                    text,
                    "\n[[node]]\nid = {}\npool = \"{}\"\ncluster = \"{}\"\nsip = \"{}\"\nhttp = \"{}\"\n",
                    node.id, pool.name, node.cluster, node.sip, node.http
                );
                if let Some(wan) = node.wan {
                    let _ = writeln!(text, "wan = \"{wan}\"");
                }
            }
        }
        if let (Some(witness), [first, second]) = (&self.witness, self.pools.as_slice()) {
            let _ = write!(
                text,
                "\n[witness]\nid = {}\nsite = \"{}\"\naddress = \"{}\"\npools = [\"{}\", \"{}\"]\n\
                 http = \"{}\"\n",
                witness.id, witness.site, witness.address, first.name, second.name, witness.http
            );
        }
        text
    }
}

impl PoolPlan {
    /// Its users as a person reads them: `u0 … u4999`.
    pub fn users_text(&self) -> String {
        format!("u{} … u{}", self.users.start(), self.users.end())
    }
}

/// Node `id`'s addresses (see the module's doc).
fn node(options: &DemoOptions, id: u64, two_sites: bool, relayed: bool) -> NodePlan {
    // At most 6 nodes: every offset fits (`--sip` and `--http` are checked against
    // PORT_OFFSET_MAX and TWO_SITES_LAST_BYTE_MAX before the layout is made).
    let n = id as u16;
    let base = options.sip.port();
    if two_sites {
        let ip = nth_address(options.sip.ip(), id);
        let http_ip = nth_address(options.http.ip(), id);
        return NodePlan {
            id,
            sip: SocketAddr::new(ip, base),
            cluster: SocketAddr::new(ip, base + CLUSTER_PORT_OFFSET),
            wan: relayed.then(|| SocketAddr::new(ip, base + WAN_PORT_OFFSET)),
            http: SocketAddr::new(http_ip, options.http.port()),
        };
    }
    let ip = options.sip.ip();
    let http = if options.http.port() == 0 {
        options.http
    } else {
        SocketAddr::new(options.http.ip(), options.http.port() + (n - 1))
    };
    NodePlan {
        id,
        sip: SocketAddr::new(ip, base + 2 * (n - 1)),
        cluster: SocketAddr::new(ip, base + CLUSTER_PORT_OFFSET + n),
        wan: None,
        http,
    }
}

/// Node `id`'s address with two sites: `first` plus `id - 1` in its last byte (an IPv6
/// address, refused with two sites, stays as it is).
fn nth_address(first: IpAddr, id: u64) -> IpAddr {
    match first {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            let last = u8::try_from(u64::from(d) + id - 1).unwrap_or(u8::MAX);
            IpAddr::V4(Ipv4Addr::new(a, b, c, last))
        }
        IpAddr::V6(_) => first,
    }
}

/// Why `address` cannot be the first of six nodes' addresses (`--sip` or `--http` with two
/// sites), and of the witness's after them `with_witness`, if it cannot.
pub fn two_sites_refusal(address: IpAddr, with_witness: bool) -> Option<String> {
    match address {
        IpAddr::V4(v4) if v4.is_loopback() && v4.octets()[3] >= 1 => {
            let last = v4.octets()[3];
            let (most, who) = match with_witness {
                true => (
                    TWO_SITES_LAST_BYTE_MAX - 1,
                    "the six nodes and the witness take it and the six addresses after it",
                ),
                false => (
                    TWO_SITES_LAST_BYTE_MAX,
                    "the six nodes take it and the five addresses after it",
                ),
            };
            (last > most)
                .then(|| format!("{v4}: {who}; its last byte must be {most} or below"))
        }
        _ => Some(format!(
            "{address}: two sites put each node on its own loopback address,              counting up from this one; give one in 127.0.0.0/8 (127.0.0.1) or use --sites 1"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use roster_topology::Deployment;

    use super::*;

    fn options(sites: u8, wan_latency_ms: u64, http: &str) -> DemoOptions {
        DemoOptions {
            sip: "127.0.0.1:5060".parse().expect("address"),
            dir: PathBuf::from("/tmp/roster-demo"),
            no_auth: false,
            http: http.parse().expect("address"),
            groups: 32,
            trusted_networks: Vec::new(),
            sites,
            wan_latency: Duration::from_millis(wan_latency_ms),
            witness: false,
        }
    }

    #[test]
    fn one_site_is_the_pool_of_three_benchmarks_know() {
        let layout = Layout::of(&options(1, 0, "127.0.0.1:8080"));
        assert_eq!(layout.pools.len(), 1);
        let pool = &layout.pools[0];
        assert_eq!((pool.id, pool.name, pool.site), (1, "demo", "site1"));
        assert_eq!(pool.users, 0..=9_999);
        let ports: Vec<(u16, u16, u16)> = pool
            .nodes
            .iter()
            .map(|node| (node.sip.port(), node.cluster.port(), node.http.port()))
            .collect();
        assert_eq!(
            ports,
            [(5060, 6061, 8080), (5062, 6062, 8081), (5064, 6063, 8082)]
        );
        assert!(pool.nodes.iter().all(|node| node.wan.is_none()));
        assert!(layout.relay_routes().is_empty());
        let deployment = Deployment::parse(&layout.topology(32)).expect("a valid topology");
        assert_eq!(deployment.pool.len(), 1);
        assert!(deployment.pair.is_empty());
    }

    #[test]
    fn two_sites_pair_two_pools_and_split_the_users() {
        let layout = Layout::of(&options(2, 0, "127.0.0.1:0"));
        let names: Vec<_> = layout
            .pools
            .iter()
            .map(|pool| (pool.name, pool.site, pool.users.clone()))
            .collect();
        assert_eq!(
            names,
            [("a", "dc1", 0..=4_999), ("b", "dc2", 5_000..=9_999)]
        );
        let ids: Vec<u64> = layout.nodes().map(|node| node.id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
        let node_6 = layout.pools[1].nodes[2];
        assert_eq!(node_6.sip.to_string(), "127.0.0.6:5060");
        assert_eq!(node_6.cluster.to_string(), "127.0.0.6:6060");
        assert_eq!(node_6.http.to_string(), "127.0.0.6:0", "any free port");
        let node_1 = layout.pools[0].nodes[0];
        assert_eq!(node_1.sip.to_string(), "127.0.0.1:5060");
        assert_eq!(layout.home_of(4_999).map(|pool| pool.name), Some("a"));
        assert_eq!(layout.home_of(5_000).map(|pool| pool.name), Some("b"));
        assert_eq!(layout.home_of(10_000), None);
        assert_eq!(layout.pool_of(4).map(|pool| pool.name), Some("b"));
        assert_eq!(
            layout.partner_of(&layout.pools[0]).map(|pool| pool.name),
            Some("b")
        );
        let deployment = Deployment::parse(&layout.topology(8)).expect("a valid topology");
        assert_eq!(deployment.partner(1), Some(2));
        assert_eq!(deployment.cms_pool(), 1);
        assert_eq!(deployment.node_ids_of(2), [4, 5, 6]);
        assert!(deployment.node.iter().all(|node| node.wan.is_none()));
    }

    #[test]
    fn a_witness_sits_in_a_third_site_after_the_nodes() {
        let mut with_witness = options(2, 20, "127.0.0.1:8080");
        with_witness.witness = true;
        let layout = Layout::of(&with_witness);
        let witness = layout.witness.expect("a witness");
        assert_eq!(witness.address.to_string(), "127.0.0.7:6060");
        assert_eq!(witness.http.to_string(), "127.0.0.7:8080");
        let deployment = Deployment::parse(&layout.topology(8)).expect("a valid topology");
        let spec = deployment.witness.as_deref().expect("[witness]");
        assert_eq!((spec.id, spec.site.as_str()), (WITNESS_ID, WITNESS_SITE));
        assert_eq!(spec.address, witness.address);
        assert_eq!(spec.http, Some(witness.http));
        assert_eq!(deployment.witness_of(1).map(|w| w.id), Some(WITNESS_ID));
        assert!(layout
            .relay_routes()
            .iter()
            .all(|route| route.target != witness.address));
        // One site has no pair to watch.
        with_witness.sites = 1;
        assert_eq!(Layout::of(&with_witness).witness, None);
        assert_eq!(Layout::of(&options(2, 0, "127.0.0.1:8080")).witness, None);
    }

    #[test]
    fn a_wan_latency_puts_a_relay_front_before_every_node() {
        let layout = Layout::of(&options(2, 50, "127.0.0.1:8080"));
        let routes = layout.relay_routes();
        assert_eq!(routes.len(), 6);
        assert_eq!(routes[0].front.to_string(), "127.0.0.1:6070");
        assert_eq!(routes[0].target.to_string(), "127.0.0.1:6060");
        assert_eq!(routes[5].front.to_string(), "127.0.0.6:6070");
        let http: Vec<String> = layout.nodes().map(|node| node.http.to_string()).collect();
        assert_eq!(http[3], "127.0.0.4:8080");
        let deployment = Deployment::parse(&layout.topology(32)).expect("a valid topology");
        let node_4 = deployment.node(4).expect("node 4");
        assert_eq!(node_4.wan_address(), routes[3].front);
        assert_eq!(node_4.cluster, routes[3].target);
        // Two sites count addresses up from --sip's and --http's: loopback, room for six.
        assert_eq!(
            two_sites_refusal("127.0.0.1".parse().expect("ip"), false),
            None
        );
        assert_eq!(
            two_sites_refusal("127.5.5.249".parse().expect("ip"), false),
            None
        );
        assert!(two_sites_refusal("127.5.5.249".parse().expect("ip"), true)
            .is_some_and(|refusal| refusal.contains("the witness") && refusal.contains("248")));
        assert_eq!(
            two_sites_refusal("127.5.5.248".parse().expect("ip"), true),
            None
        );
        for refused in ["127.0.0.250", "127.0.0.0", "10.0.0.1", "0.0.0.0", "::1"] {
            assert!(
                two_sites_refusal(refused.parse().expect("ip"), false).is_some(),
                "{refused}"
            );
        }
        // One site has nothing to relay.
        assert!(Layout::of(&options(1, 50, "127.0.0.1:8080"))
            .relay_routes()
            .is_empty());
    }
}
