//! `roster user`: the users of a pool's directory (the CMS), through any node of the CMS's
//! pool or its partner (`add`, `remove`, `show`, `list`, `enable`, `disable`; `import` is in
//! `user_import`), or a users file (`add --users-file`: a single node's `auth.users_file`, or
//! the seed of a new pool's directory).
//!
//! Passwords are read from standard input and hashed here (HA1, MD5 and SHA-256, in the realm
//! the nodes challenge in): a password never leaves the machine.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;

use anyhow::Context as _;
use roster::admin_api::users::{
    canonical_aor, DirectoryInfo, NewUser, PutUsers, PutUsersAnswer, RemoveUsers,
    RemoveUsersAnswer, SetEnabled, UserPage, UserView, DIRECTORY_PATH, USERS_ENABLED_PATH,
    USERS_PAGE_MAX, USERS_PATH, USERS_REMOVE_PATH, USER_PATH,
};
use roster::users::{UserEntry, UsersFile};
use roster_cms::USERS_PER_COMMAND_MAX;

use super::args::{AdminTarget, Format, UserCommand};
use super::node_client::{query_value, CallError, NodeClient, NodeOrder};
use super::{runtime, user_import};

/// Runs a `roster user` subcommand.
pub fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            users_file: Some(users_file),
            aor,
            username,
            realm,
            pool,
            ..
        } => add_to_file(users_file, aor, username, realm, pool),
        UserCommand::Add {
            users_file: None,
            target,
            aor,
            username,
            realm,
            pool,
            bindings_max,
            replace,
        } => {
            let new = NewUserArgs {
                aor,
                username,
                realm,
                pool,
                bindings_max,
                replace,
            };
            runtime::block_on(add(&target, new))?
        }
        UserCommand::Remove {
            target,
            aors,
            missing_ok,
        } => runtime::block_on(remove(&target, &aors, missing_ok))?,
        UserCommand::Show { target, aor } => runtime::block_on(show(&target, &aor))?,
        UserCommand::List {
            target,
            pool,
            offset,
            limit,
            all,
        } => {
            let limit = if all { usize::MAX } else { limit };
            runtime::block_on(list(&target, pool.as_deref(), offset, limit))?
        }
        UserCommand::Enable { target, aor } => runtime::block_on(set_enabled(&target, &aor, true))?,
        UserCommand::Disable { target, aor } => {
            runtime::block_on(set_enabled(&target, &aor, false))?
        }
        UserCommand::Import {
            target,
            file,
            realm,
            replace,
        } => runtime::block_on(user_import::import(&target, &file, realm, replace))?,
    }
}

/// What `roster user add` says about the user.
struct NewUserArgs {
    aor: String,
    username: Option<String>,
    realm: Option<String>,
    pool: Option<String>,
    bindings_max: Option<u32>,
    replace: bool,
}

/// A client of the directory's admin routes: nodes of the CMS's pool first.
pub fn client(target: &AdminTarget) -> anyhow::Result<NodeClient> {
    NodeClient::admin(&target.node, NodeOrder::Cms, target.token_file.as_deref())
}

/// The directory's realm, pools and limits, from the node.
pub async fn directory(client: &mut NodeClient) -> anyhow::Result<DirectoryInfo> {
    Ok(client.get(DIRECTORY_PATH).await?.value)
}

/// The realm hashes are computed in: `--realm`, else the one the nodes challenge in.
pub fn realm(asked: Option<String>, info: &DirectoryInfo) -> anyhow::Result<String> {
    asked.or_else(|| info.realm.clone()).context(
        "the nodes do not authenticate (no [auth] realm): name the realm the hashes are for \
         with --realm",
    )
}

/// `roster user add` into the pool's directory.
async fn add(target: &AdminTarget, new: NewUserArgs) -> anyhow::Result<()> {
    let aor = canonical_aor(&new.aor).map_err(|error| anyhow::anyhow!("--aor: {error}"))?;
    let username = match new.username {
        Some(username) => username,
        None => user_part(&aor)?,
    };
    let mut client = client(target)?;
    let info = directory(&mut client).await?;
    let realm = realm(new.realm, &info)?;
    if let Some(pool) = &new.pool {
        anyhow::ensure!(
            info.pools.iter().any(|known| &known.pool.name == pool),
            "--pool {pool:?} is not in the deployment (pools: {})",
            pool_names(&info)
        );
    }
    let password = read_password(&username)?;
    let mut user = NewUser::from_password(&aor, &username, &realm, &password);
    user.pool = new.pool.clone();
    user.bindings_max = new.bindings_max;
    // The node checks it too; checked here, a mistake is named before anything is sent.
    user.to_record(|_| Ok(info.cms_pool.id))
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let request = PutUsers {
        users: vec![user],
        replace: new.replace,
    };
    let reply = client.post::<_, PutUsersAnswer>(USERS_PATH, &request).await;
    let answer = match reply {
        Ok(reply) => reply.value,
        Err(CallError::Refused {
            status: 409,
            answer,
            uncertain: true,
            ..
        }) if answer.aor.as_deref() == Some(aor.as_str()) && !new.replace => {
            // A first attempt whose answer was lost added the user.
            PutUsersAnswer {
                added: 1,
                replaced: 0,
            }
        }
        Err(CallError::Refused {
            status: 409,
            answer,
            ..
        }) if !new.replace => {
            anyhow::bail!("{}: use --replace to change an existing user", answer.error)
        }
        Err(error) => return Err(error.into()),
    };
    let home = new.pool.unwrap_or_else(|| info.cms_pool.name.clone());
    match target.format {
        Format::Json => print_json(&serde_json::json!({
            "aor": aor,
            "pool": home,
            "username": username,
            "realm": realm,
            "added": answer.added,
            "replaced": answer.replaced,
        }))?,
        Format::Table => println!(
            "{} {aor} (home pool {home}, digest user {username}, realm {realm}) through {}",
            if answer.replaced > 0 {
                "replaced"
            } else {
                "added"
            },
            client.node()
        ),
    }
    Ok(())
}

/// `roster user remove`.
async fn remove(target: &AdminTarget, aors: &[String], missing_ok: bool) -> anyhow::Result<()> {
    let aors = aors
        .iter()
        .map(|aor| canonical_aor(aor).map_err(|error| anyhow::anyhow!("--aor: {error}")))
        .collect::<anyhow::Result<Vec<String>>>()?;
    let mut client = client(target)?;
    let mut total = RemoveUsersAnswer {
        removed: 0,
        not_found: 0,
    };
    for chunk in aors.chunks(USERS_PER_COMMAND_MAX) {
        let request = RemoveUsers {
            aors: chunk.to_vec(),
        };
        let reply = client
            .post::<_, RemoveUsersAnswer>(USERS_REMOVE_PATH, &request)
            .await?;
        total.removed += reply.value.removed;
        // A retried removal finds what the first attempt removed gone: not missing.
        if !reply.uncertain {
            total.not_found += reply.value.not_found;
        }
    }
    match target.format {
        Format::Json => print_json(&total)?,
        Format::Table => {
            print!("removed {} user(s)", total.removed);
            if total.not_found > 0 {
                print!("; {} not in the directory", total.not_found);
            }
            println!();
        }
    }
    anyhow::ensure!(
        missing_ok || total.not_found == 0,
        "{} of {} user(s) were not in the directory (--missing-ok accepts that)",
        total.not_found,
        aors.len()
    );
    Ok(())
}

/// `roster user show`.
async fn show(target: &AdminTarget, aor: &str) -> anyhow::Result<()> {
    let aor = canonical_aor(aor).map_err(|error| anyhow::anyhow!("--aor: {error}"))?;
    let mut client = client(target)?;
    let path = format!("{USER_PATH}?aor={}", query_value(&aor));
    let user: UserView = client.get(&path).await?.value;
    match target.format {
        Format::Json => print_json(&user)?,
        Format::Table => {
            println!("aor           {}", user.aor);
            println!("home pool     {} (id {})", user.pool.name, user.pool.id);
            println!("digest user   {}", user.username);
            println!("HA1 hashes    {}", user.algorithms.join(", "));
            println!(
                "bindings max  {}",
                user.bindings_max.map_or_else(
                    || "the registrar's policy".to_string(),
                    |max| max.to_string()
                )
            );
            println!("enabled       {}", if user.enabled { "yes" } else { "no" });
        }
    }
    Ok(())
}

/// `roster user list`: `limit` users from `offset` (any number: fetched a page at a time).
async fn list(
    target: &AdminTarget,
    pool: Option<&str>,
    offset: usize,
    limit: usize,
) -> anyhow::Result<()> {
    let mut client = client(target)?;
    let mut users: Vec<UserView> = Vec::new();
    let mut last: Option<UserPage> = None;
    loop {
        let wanted = limit.saturating_sub(users.len());
        if wanted == 0 {
            break;
        }
        let mut path = format!(
            "{USERS_PATH}?offset={}&limit={}",
            offset + users.len(),
            wanted.min(USERS_PAGE_MAX)
        );
        if let Some(pool) = pool {
            path.push_str(&format!("&pool={}", query_value(pool)));
        }
        let mut page: UserPage = client.get(&path).await?.value;
        let got = page.users.len();
        users.append(&mut page.users);
        let done = got == 0 || offset + users.len() >= page.total;
        last = Some(page);
        if done {
            break;
        }
    }
    let Some(page) = last else {
        anyhow::bail!("--limit must be at least 1");
    };
    match target.format {
        Format::Json => print_json(&serde_json::json!({
            "total": page.total,
            "offset": offset,
            "pool": page.pool,
            "replica": page.replica,
            "users": users,
        }))?,
        Format::Table => {
            print!("{}", users_table(&users));
            let scope = page
                .pool
                .as_ref()
                .map_or_else(String::new, |pool| format!(" homed on pool {}", pool.name));
            if users.is_empty() {
                println!("no users{scope} from {} (of {})", offset + 1, page.total);
            } else {
                println!(
                    "users {}–{} of {}{scope}; read from {} (its {} replica at index {})",
                    offset + 1,
                    offset + users.len(),
                    page.total,
                    client.node(),
                    page.replica.kind,
                    page.replica
                        .applied_index
                        .map_or_else(|| "-".to_string(), |index| index.to_string())
                );
            }
        }
    }
    Ok(())
}

/// `roster user enable` and `roster user disable`.
async fn set_enabled(target: &AdminTarget, aor: &str, enabled: bool) -> anyhow::Result<()> {
    let aor = canonical_aor(aor).map_err(|error| anyhow::anyhow!("--aor: {error}"))?;
    let mut client = client(target)?;
    let request = SetEnabled {
        aor: aor.clone(),
        enabled,
    };
    let answer: SetEnabled = client.post(USERS_ENABLED_PATH, &request).await?.value;
    match target.format {
        Format::Json => print_json(&answer)?,
        Format::Table => println!("{} {aor}", if enabled { "enabled" } else { "disabled" }),
    }
    Ok(())
}

/// The users as a table, one per line.
fn users_table(users: &[UserView]) -> String {
    use std::fmt::Write as _;
    let aor_width = users
        .iter()
        .map(|user| user.aor.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let pool_width = users
        .iter()
        .map(|user| user.pool.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let name_width = users
        .iter()
        .map(|user| user.username.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<aor_width$}  {:<pool_width$}  {:<name_width$}  {:<12}  {:>5}  enabled",
        "aor", "pool", "username", "ha1", "limit"
    );
    for user in users {
        let _ = writeln!(
            text,
            "{:<aor_width$}  {:<pool_width$}  {:<name_width$}  {:<12}  {:>5}  {}",
            user.aor,
            user.pool.name,
            user.username,
            user.algorithms.join(","),
            user.bindings_max
                .map_or_else(|| "-".to_string(), |max| max.to_string()),
            if user.enabled { "yes" } else { "no" }
        );
    }
    text
}

/// The user part of a canonical AOR.
pub fn user_part(aor: &str) -> anyhow::Result<String> {
    roster_sip::Uri::parse(aor)
        .ok()
        .and_then(|uri| uri.user)
        .with_context(|| format!("{aor:?} has no user part"))
}

/// The pools' names, for messages.
pub fn pool_names(info: &DirectoryInfo) -> String {
    let names: Vec<&str> = info
        .pools
        .iter()
        .map(|pool| pool.pool.name.as_str())
        .collect();
    names.join(", ")
}

/// Prints `value` as pretty JSON.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// One line of standard input, without its line ending: the password.
fn read_password(username: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        eprintln!("password for {username} (one line):");
    }
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!password.is_empty(), "empty password on standard input");
    Ok(password)
}

/// `roster user add --users-file`: adds `aor` (digest user `username`, default its user part;
/// realm `realm`, default its domain; home pool `pool` when the file seeds a pool) to
/// `users_file`, created if missing; the whole file is checked before it is written.
fn add_to_file(
    users_file: PathBuf,
    aor: String,
    username: Option<String>,
    realm: Option<String>,
    pool: Option<String>,
) -> anyhow::Result<()> {
    let uri = roster_sip::Uri::parse(&aor).with_context(|| format!("invalid --aor {aor:?}"))?;
    let user_part = uri
        .user
        .clone()
        .with_context(|| format!("--aor {aor:?} has no user part"))?;
    let username = username.unwrap_or(user_part);
    let realm = realm.unwrap_or_else(|| uri.host.to_ascii_lowercase());
    let mut file: UsersFile = match std::fs::read_to_string(&users_file) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("invalid users file {}", users_file.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => UsersFile::default(),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", users_file.display()))
        }
    };
    let password = read_password(&username)?;
    let mut entry = UserEntry::from_password(&uri.aor(), &username, &realm, &password);
    entry.pool = pool;
    file.user.push(entry);
    // Check the whole file (duplicates included) before writing it.
    roster::users::directory(toml::from_str(&toml::to_string(&file)?)?)
        .map_err(|message| anyhow::anyhow!("{message}"))?;
    roster::secret::write_secret(&users_file, toml::to_string(&file)?.as_bytes())
        .with_context(|| format!("cannot write {}", users_file.display()))?;
    println!(
        "added {} (digest user {username}, realm {realm}) to {}",
        uri.aor(),
        users_file.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use roster::admin_api::users::PoolName;

    use super::*;

    #[test]
    fn the_table_lists_users_without_hashes() {
        let users = vec![UserView {
            aor: "sip:alice@example.com".into(),
            pool: PoolName {
                id: 1,
                name: "east".into(),
            },
            username: "alice".into(),
            algorithms: vec!["SHA-256".into(), "MD5".into()],
            bindings_max: Some(2),
            enabled: false,
        }];
        let table = users_table(&users);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("aor"), "{table}");
        assert!(
            lines[1].contains("sip:alice@example.com")
                && lines[1].contains("east")
                && lines[1].contains("SHA-256,MD5")
                && lines[1].ends_with("no"),
            "{table}"
        );
    }

    #[test]
    fn the_user_part_names_the_digest_user() {
        assert_eq!(user_part("sip:alice@example.com").expect("user"), "alice");
        assert!(user_part("sip:example.com").is_err());
    }
}
