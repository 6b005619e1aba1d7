//! `roster user add`: adds a user to a users file, storing only the HA1 hashes of the
//! password read from standard input.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;

use anyhow::Context as _;
use roster::users::{UserEntry, UsersFile};

/// Adds `aor` (digest user `username`, default its user part; realm `realm`, default its
/// domain) to `users_file`, created if missing; the whole file is checked before it is
/// written.
pub fn add_user(
    users_file: PathBuf,
    aor: String,
    username: Option<String>,
    realm: Option<String>,
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
    if std::io::stdin().is_terminal() {
        eprintln!("password for {username} (one line):");
    }
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "empty password on standard input");
    file.user.push(UserEntry::from_password(
        &uri.aor(),
        &username,
        &realm,
        password,
    ));
    // Check the whole file (duplicates included) before writing it.
    roster::users::directory(toml::from_str(&toml::to_string(&file)?)?)
        .map_err(|message| anyhow::anyhow!("{message}"))?;
    roster::secret::write_secret(&users_file, toml::to_string(&file)?.as_bytes())
        .with_context(|| format!("cannot write {}", users_file.display()))?;
    println!(
        "added {} (digest user {username}, realm {realm})",
        uri.aor()
    );
    Ok(())
}
