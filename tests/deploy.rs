//! What `deploy/` ships is checked by the tools that read it: the alert rules by `promtool
//! check rules` and their unit tests by `promtool test rules`; the Grafana dashboard's every
//! query parsed by promtool (as recording rules) and its metric names are real ones (the
//! running deployment's `/metrics` is checked in `status_page.rs`); the systemd unit by
//! `systemd-analyze verify`, and the init script for hosts without systemd runs its commands;
//! the Ansible playbooks by `ansible-playbook --syntax-check`, and the control machine's parts
//! of `init.yml` and `rotate-ca.yml` run for real on the example inventory.
//! `scripts/test` installs promtool (Debian's `prometheus`) and ansible-core (in
//! `deploy/ansible/.venv`, see `deploy/ansible/README.md`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use roster_tests::{roster_bin, run_with_deadline, TempDir, Users};

/// How long one tool run may take.
const TOOL_DEADLINE: Duration = Duration::from_secs(120);

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Runs `command`; panics with its output unless it succeeds. Returns stdout and stderr.
fn run_ok(command: &mut Command) -> String {
    let output = run_with_deadline(command, TOOL_DEADLINE);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed: {text}");
    text
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = deploy_dir().join("prometheus");
    let checked = run_ok(Command::new("promtool").current_dir(&dir).args([
        "check",
        "rules",
        "roster.rules.yml",
    ]));
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    let tested = run_ok(Command::new("promtool").current_dir(&dir).args([
        "test",
        "rules",
        "roster.rules.test.yml",
    ]));
    assert!(tested.contains("SUCCESS"), "{tested}");
    let config = run_ok(Command::new("promtool").current_dir(&dir).args([
        "check",
        "config",
        "--syntax-only",
        "prometheus.yml",
    ]));
    assert!(config.contains("SUCCESS"), "{config}");
}

#[test]
fn every_dashboard_query_parses() {
    let queries = roster_tests::deployment::dashboard_queries();
    assert!(queries.len() >= 15, "{queries:?}");
    // promtool parses PromQL in rule files: each query becomes a recording rule.
    let dir = TempDir::new("dashboard");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (index, query) in queries.iter().enumerate() {
        let quoted = serde_json::to_string(query).expect("a string");
        rules.push_str(&format!(
            "      - record: dashboard:query{index}\n        expr: {quoted}\n"
        ));
    }
    let path = dir.path().join("dashboard.rules.yml");
    std::fs::write(&path, rules).expect("write rules");
    let checked = run_ok(
        Command::new("promtool")
            .arg("check")
            .arg("rules")
            .arg(&path),
    );
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{checked}"
    );
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/roster.service"))
        .expect("deploy/systemd/roster.service");
    // systemd-analyze checks that ExecStart's program exists: point it at the built binary.
    let dir = TempDir::new("unit");
    let path = dir.path().join("roster.service");
    let binary = roster_bin();
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/roster", &binary.to_string_lossy()),
    )
    .expect("write unit");
    let output = run_with_deadline(
        Command::new("systemd-analyze").arg("verify").arg(&path),
        TOOL_DEADLINE,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "systemd-analyze verify: {stderr}");
    // Unknown keys or sections are only warnings: none is allowed.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("roster.service"))
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
    for key in [
        "User=roster",
        "Restart=on-failure",
        "LimitNOFILE=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(key), "the unit lacks {key}");
    }
}

/// The init script (hosts without systemd, `roster_service_manager: sysv`) parses, and runs
/// what the unit runs: its `ExecStartPre=` and `ExecStart=` command lines, as the unit's user
/// with its capability.
#[test]
fn the_init_script_runs_the_units_commands() {
    let script_path = deploy_dir().join("init.d/roster");
    run_ok(Command::new("sh").arg("-n").arg(&script_path));
    let script = std::fs::read_to_string(&script_path).expect("deploy/init.d/roster");
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/roster.service"))
        .expect("deploy/systemd/roster.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|line| line.strip_prefix(key))
            .unwrap_or_else(|| panic!("the unit has no {key}"))
            .to_owned()
    };
    let start = value("ExecStart=");
    let check = value("ExecStartPre=");
    assert_eq!(check, format!("{start} --check-config"));
    // The script spells the program and the configuration once each, as variables.
    let (program, config) = start
        .split_once(" start --config ")
        .expect("ExecStart= is `roster start --config FILE`");
    assert!(script.contains(&format!("DAEMON={program}\n")), "{program}");
    assert!(script.contains(&format!("CONFIG={config}\n")), "{config}");
    for piece in [
        "\"$DAEMON\" start --config \"$CONFIG\" --check-config",
        "\"$DAEMON\" start --config \"$CONFIG\"\n",
        &format!("--reuid {}", value("User=")),
        &format!("--regid {}", value("Group=")),
        "--ambient-caps -all,+net_bind_service",
        "ulimit -n 1048576",
    ] {
        assert!(script.contains(piece), "the init script lacks {piece:?}");
    }
}

/// The `ansible-playbook` of `deploy/ansible/.venv` (or on the path).
fn ansible_playbook() -> PathBuf {
    let venv = deploy_dir().join("ansible/.venv/bin/ansible-playbook");
    if venv.exists() {
        return venv;
    }
    let on_path = Command::new("ansible-playbook")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        on_path,
        "ansible-playbook is not installed: python3 -m venv deploy/ansible/.venv && \
         deploy/ansible/.venv/bin/pip install ansible-core (scripts/test does)"
    );
    PathBuf::from("ansible-playbook")
}

#[test]
fn the_playbooks_pass_ansible_syntax_check() {
    let program = ansible_playbook();
    for playbook in ["init.yml", "site.yml", "upgrade.yml", "rotate-ca.yml"] {
        run_ok(
            Command::new(&program)
                .current_dir(deploy_dir().join("ansible"))
                .args(["--syntax-check", "-i", "inventory.example.yml", playbook]),
        );
    }
}

/// The control machine's part of the playbooks, run for real on the example inventory: the
/// topology it renders has both sites, pools and all six nodes, `roster start --check-config`
/// accepts every node's configuration, and a second run changes nothing.
#[test]
fn the_init_playbook_renders_the_inventory_into_configs_that_check() {
    let dir = control_machine("ansible-init");
    let first = run_ok(&mut playbook(&dir, "init.yml", &[]));
    assert!(first.contains("failed=0"), "{first}");
    let build = dir.path().join("build");
    let topology = std::fs::read_to_string(build.join("topology.toml")).expect("topology");
    let topology: toml::Value = toml::from_str(&topology).expect("topology TOML");
    let count = |key: &str| topology[key].as_array().map_or(0, Vec::len);
    assert_eq!(
        (count("site"), count("pool"), count("pair"), count("node")),
        (2, 2, 1, 6),
        "{topology:#?}"
    );
    for id in 1..=6 {
        let config = build.join(format!("pool/node-{id}/roster.toml"));
        let checked = run_ok(
            Command::new(roster_bin())
                .args(["start", "--check-config", "--config"])
                .arg(&config),
        );
        assert!(checked.contains("the node can start"), "{checked}");
    }
    let again = run_ok(&mut playbook(&dir, "init.yml", &[]));
    assert!(
        again.contains("changed=0"),
        "a second run changed something: {again}"
    );
}

/// `rotate-ca.yml`'s control-machine part, for real on the example inventory's `roster init`
/// output (an inventory without nodes: no VM to roll out to): each step is made once, in turn; a step
/// the files show made is not made again (so the same command resumes a failed roll); a step
/// out of turn is refused with roster's reason.
#[test]
fn the_rotation_playbook_makes_each_step_once_in_turn() {
    let dir = control_machine("ansible-rotate");
    run_ok(&mut playbook(&dir, "init.yml", &[]));
    let tls = dir.path().join("build/pool/tls");
    let trusted = || std::fs::read_to_string(tls.join("ca.pem")).expect("ca.pem");
    let old = trusted();
    // An inventory with no node: the rolls find no host, the control machine's plays run.
    let no_nodes = dir.path().join("no-nodes.yml");
    std::fs::write(
        &no_nodes,
        "all:\n  children:\n    roster:\n      hosts: {}\n",
    )
    .expect("write no-nodes.yml");
    let rotate = |steps: &str| {
        let mut command = playbook(&dir, "rotate-ca.yml", &["-e"]);
        command.arg(format!("roster_ca_steps={steps}"));
        // The same arguments, on the inventory without nodes.
        let arguments: Vec<std::ffi::OsString> = command
            .get_args()
            .map(|argument| match argument.to_str() {
                Some("inventory.example.yml") => no_nodes.clone().into_os_string(),
                _ => argument.to_os_string(),
            })
            .collect();
        let mut command = Command::new(ansible_playbook());
        command
            .current_dir(deploy_dir().join("ansible"))
            .env("ANSIBLE_NOCOLOR", "1")
            .args(arguments);
        command
    };

    let begun = run_ok(&mut rotate("begin"));
    assert!(
        begun.contains("now trusts the current CA and the next one"),
        "{begun}"
    );
    assert_eq!(trusted().matches("BEGIN CERTIFICATE").count(), 2);
    let early = run_with_deadline(&mut rotate("finish"), TOOL_DEADLINE);
    let said = String::from_utf8_lossy(&early.stdout);
    assert!(!early.status.success(), "{said}");
    assert!(
        said.contains("`roster cert rotate issue` is next"),
        "{said}"
    );

    // begin is made already (made again, it would be refused: ca.pem holds two CAs).
    let rest = run_ok(&mut rotate("begin,issue,finish"));
    assert!(
        rest.contains("re-issued 6 node certificate(s) with the new CA"),
        "{rest}"
    );
    assert!(rest.contains("trusts the new CA alone"), "{rest}");
    assert_eq!(trusted().matches("BEGIN CERTIFICATE").count(), 1);
    assert_ne!(trusted(), old);
    assert!(!tls.join("ca-next.key").exists() && !tls.join("ca-previous.key").exists());
    // A finish whose roll failed is resumed by the same command: nothing made again.
    assert!(run_ok(&mut rotate("finish")).contains("changed=0"));
}

/// A control machine's directory: the users file of three users; `build/` is made by
/// `init.yml`.
fn control_machine(label: &str) -> TempDir {
    let dir = TempDir::new(label);
    Users {
        count: 3,
        password: "secret".into(),
    }
    .write(dir.path());
    dir
}

/// `ansible-playbook -i inventory.example.yml PLAYBOOK` in `deploy/ansible` with the build
/// directory, users file and binary of the control machine `dir`, then `extra`.
fn playbook(dir: &TempDir, playbook: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(ansible_playbook());
    command
        .current_dir(deploy_dir().join("ansible"))
        .env("ANSIBLE_NOCOLOR", "1")
        .args(["-i", "inventory.example.yml", playbook, "-e"])
        .arg(format!(
            "roster_build_dir={}",
            dir.path().join("build").display()
        ))
        .arg("-e")
        .arg(format!("roster_binary={}", roster_bin().display()))
        .arg("-e")
        .arg(format!(
            "roster_users_file={}",
            dir.path().join("users.toml").display()
        ))
        .args(extra);
    command
}
