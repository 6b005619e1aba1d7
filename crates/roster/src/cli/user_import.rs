//! `roster user import FILE.csv`: users from a CSV file into the pool's directory.
//!
//! Every line is checked before anything is sent (errors name the line): its fields, its AOR,
//! its password or hashes, its pool, duplicates within the file, and, without `--replace`,
//! AORs and digest user names the directory already holds. Then the users go in commands of
//! at most `USERS_PER_COMMAND_MAX` (fewer when long AORs and names fill a log entry first),
//! each all-or-nothing, with a progress bar on a terminal.
//!
//! The columns, named by the first line in any order:
//!
//! | column | meaning |
//! | --- | --- |
//! | `aor` | the address of record, `sip:user@domain` (required) |
//! | `password` | hashed here (HA1, MD5 and SHA-256) in the realm; never sent |
//! | `ha1_md5`, `ha1_sha256` | precomputed HA1 hashes (hex), instead of a password |
//! | `username` | digest user name; default the AOR's user part |
//! | `pool` | home pool by name; default the CMS's pool |
//! | `bindings_max` | the user's binding limit; default the registrar's policy |
//! | `enabled` | `true`/`false` (`yes`/`no`, `1`/`0`); default true |

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use roster::admin_api::users::{
    command_runs, DirectoryInfo, NewUser, PutUsers, PutUsersAnswer, UserPage, USERS_PAGE_MAX,
    USERS_PATH,
};
use roster_cms::UserRecord;

use super::args::{AdminTarget, Format};
use super::node_client::{CallError, NodeClient};
use super::user::{client, directory, pool_names, print_json, realm, user_part};

/// Users one import may carry: the design point is 500,000 users per pool, two paired pools;
/// every node holds the whole directory in memory.
pub const IMPORT_USERS_MAX: usize = 1_000_000;

/// Largest CSV file read: [`IMPORT_USERS_MAX`] lines of about 250 bytes.
pub const IMPORT_FILE_SIZE_MAX: u64 = 256 * 1024 * 1024;

/// Errors listed before the rest are only counted.
const ERRORS_SHOWN_MAX: usize = 20;

/// Bytes of encoded records one command may carry: a CMS command must fit one log entry
/// (`roster_raft::REQUEST_SIZE_MAX`), less room for the request around the records.
const COMMAND_RECORD_BYTES_MAX: usize = roster_raft::REQUEST_SIZE_MAX - 1024;

/// Every column the file may have.
const COLUMNS: [&str; 8] = [
    "aor",
    "password",
    "username",
    "pool",
    "bindings_max",
    "enabled",
    "ha1_md5",
    "ha1_sha256",
];

/// One line of the file, its fields by column.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportLine {
    /// Its line number in the file (1 is the header).
    pub line: usize,
    /// `aor`.
    pub aor: String,
    /// `password`, if given.
    pub password: Option<String>,
    /// `username`, if given.
    pub username: Option<String>,
    /// `pool`, if given.
    pub pool: Option<String>,
    /// `bindings_max`, if given.
    pub bindings_max: Option<u32>,
    /// `enabled` (default true).
    pub enabled: bool,
    /// `ha1_md5`, if given.
    pub ha1_md5: Option<String>,
    /// `ha1_sha256`, if given.
    pub ha1_sha256: Option<String>,
}

/// A checked user, ready to send.
#[derive(Clone, Debug)]
pub struct Checked {
    /// Its line.
    pub line: usize,
    /// What is sent.
    pub user: NewUser,
    /// The record the CMS will hold (canonical AOR), for checks and sizes.
    pub record: UserRecord,
}

/// What an import did.
#[derive(Clone, Debug, serde::Serialize)]
struct Imported {
    file: String,
    users: usize,
    added: usize,
    replaced: usize,
    commands: usize,
    node: String,
    check_seconds: f64,
    send_seconds: f64,
    users_per_second: f64,
}

/// `roster user import`.
pub async fn import(
    target: &AdminTarget,
    file: &Path,
    realm_asked: Option<String>,
    replace: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let text = read_file(file)?;
    let lines = parse(&text).map_err(|errors| listed("the file", &errors))?;
    anyhow::ensure!(!lines.is_empty(), "{} has no users", file.display());
    let mut client = client(target)?;
    let info = directory(&mut client).await?;
    let needs_realm = lines.iter().any(|line| line.password.is_some());
    let realm = if needs_realm {
        realm(realm_asked, &info)?
    } else {
        String::new()
    };
    let checked = check(&lines, &info, &realm).map_err(|errors| listed("the file", &errors))?;
    let existing = existing_users(&mut client).await?;
    conflicts(&checked, &existing, replace)
        .map_err(|errors| listed("the directory (nothing was sent)", &errors))?;
    let check_seconds = started.elapsed().as_secs_f64();
    let records: Vec<UserRecord> = checked.iter().map(|user| user.record.clone()).collect();
    let runs = command_runs(&records, COMMAND_RECORD_BYTES_MAX, encoded_size);
    let sending = Instant::now();
    let bar = progress(checked.len() as u64);
    let mut totals = PutUsersAnswer {
        added: 0,
        replaced: 0,
    };
    for run in &runs {
        let answer = send(&mut client, &checked, run.clone(), replace)
            .await
            .map_err(|error| {
                bar.abandon();
                let done = &checked[..run.start];
                match done.last() {
                    Some(last) => error.context(format!(
                        "{} user(s) of lines {}–{} were imported before it; without --replace, \
                         import only the lines after them",
                        done.len(),
                        checked[0].line,
                        last.line
                    )),
                    None => error.context("nothing was imported"),
                }
            })?;
        totals.added += answer.added;
        totals.replaced += answer.replaced;
        bar.inc(run.len() as u64);
    }
    bar.finish_and_clear();
    let send_seconds = sending.elapsed().as_secs_f64();
    let imported = Imported {
        file: file.display().to_string(),
        users: checked.len(),
        added: totals.added,
        replaced: totals.replaced,
        commands: runs.len(),
        node: client.node().to_string(),
        check_seconds,
        send_seconds,
        users_per_second: checked.len() as f64 / send_seconds.max(1e-6),
    };
    match target.format {
        Format::Json => print_json(&imported)?,
        Format::Table => println!(
            "imported {} users from {} ({} added, {} replaced) in {} commands through {}: \
             checked in {:.1} s, sent in {:.1} s ({:.0} users/s)",
            imported.users,
            imported.file,
            imported.added,
            imported.replaced,
            imported.commands,
            imported.node,
            imported.check_seconds,
            imported.send_seconds,
            imported.users_per_second
        ),
    }
    Ok(())
}

/// Sends the users of `run` in one command. A retry of a command whose first attempt may have
/// been applied finds its first user there: the command was applied (the users were checked
/// absent before the import, and a command is all or nothing).
async fn send(
    client: &mut NodeClient,
    checked: &[Checked],
    run: Range<usize>,
    replace: bool,
) -> anyhow::Result<PutUsersAnswer> {
    let users = &checked[run.clone()];
    let request = PutUsers {
        users: users.iter().map(|user| user.user.clone()).collect(),
        replace,
    };
    match client.post::<_, PutUsersAnswer>(USERS_PATH, &request).await {
        Ok(reply) => Ok(reply.value),
        Err(CallError::Refused {
            status: 409,
            answer,
            uncertain: true,
            ..
        }) if !replace
            && answer.username.is_none()
            && answer.aor.as_deref() == Some(users[0].record.aor.as_str()) =>
        {
            Ok(PutUsersAnswer {
                added: users.len(),
                replaced: 0,
            })
        }
        Err(CallError::Refused { status, answer, .. }) => {
            let line = users
                .iter()
                .find(|user| {
                    answer.aor.as_deref() == Some(user.record.aor.as_str())
                        || answer.username.as_deref()
                            == Some(user.record.credentials.username.as_str())
                })
                .map_or_else(
                    || format!("lines {}–{}", users[0].line, users[users.len() - 1].line),
                    |user| format!("line {}", user.line),
                );
            anyhow::bail!("{line}: refused ({status}): {}", answer.error)
        }
        Err(error) => Err(error.into()),
    }
}

/// The file's text, within [`IMPORT_FILE_SIZE_MAX`].
fn read_file(file: &Path) -> anyhow::Result<String> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    anyhow::ensure!(
        size <= IMPORT_FILE_SIZE_MAX,
        "{} is {size} bytes; an import reads at most {IMPORT_FILE_SIZE_MAX} (split it)",
        file.display()
    );
    std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {} as UTF-8", file.display()))
}

/// The file's lines after its header, or every error found (by line).
pub fn parse(text: &str) -> Result<Vec<ImportLine>, Vec<String>> {
    let mut rows = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .filter(|(_, line)| !line.trim().is_empty());
    let Some((header_line, header)) = rows.next() else {
        return Err(vec![
            "the file is empty: its first line names the columns".into()
        ]);
    };
    let columns = header_columns(header_line, header).map_err(|error| vec![error])?;
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (number, row) in rows {
        if lines.len() + errors.len() >= IMPORT_USERS_MAX {
            errors.push(format!(
                "line {number}: more than {IMPORT_USERS_MAX} users in one import (split the file)"
            ));
            break;
        }
        match fields(row).and_then(|fields| line(number, &columns, fields)) {
            Ok(line) => lines.push(line),
            Err(error) => errors.push(format!("line {number}: {error}")),
        }
    }
    if errors.is_empty() {
        Ok(lines)
    } else {
        Err(errors)
    }
}

/// The header's columns, each one of [`COLUMNS`], once, `aor` among them.
fn header_columns(number: usize, header: &str) -> Result<Vec<&'static str>, String> {
    let names = fields(header).map_err(|error| format!("line {number}: {error}"))?;
    let mut columns: Vec<&'static str> = Vec::new();
    for name in names {
        let name = name.trim().to_ascii_lowercase();
        let column = COLUMNS
            .iter()
            .find(|known| **known == name)
            .ok_or_else(|| {
                format!(
                    "line {number}: unknown column {name:?} (columns: {})",
                    COLUMNS.join(", ")
                )
            })?;
        if columns.contains(column) {
            return Err(format!("line {number}: column {column} appears twice"));
        }
        columns.push(column);
    }
    if !columns.contains(&"aor") {
        return Err(format!(
            "line {number}: the header names no aor column (it names the columns: {})",
            COLUMNS.join(", ")
        ));
    }
    Ok(columns)
}

/// The fields of one CSV line: separated by commas, a field with a comma or a quote in double
/// quotes (a quote inside doubled). A quoted field does not span lines.
fn fields(row: &str) -> Result<Vec<String>, String> {
    let row = row.strip_suffix('\r').unwrap_or(row);
    let mut fields = Vec::new();
    let mut chars = row.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed on its line".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("{c:?} after a quoted field (expected a comma)")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => {
                        return Err("a quote inside an unquoted field (quote the field)".into())
                    }
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// One line's fields as an [`ImportLine`].
fn line(number: usize, columns: &[&str], fields: Vec<String>) -> Result<ImportLine, String> {
    if fields.len() != columns.len() {
        return Err(format!(
            "{} field(s), the header names {}",
            fields.len(),
            columns.len()
        ));
    }
    let mut line = ImportLine {
        line: number,
        enabled: true,
        ..ImportLine::default()
    };
    for (column, value) in columns.iter().zip(fields) {
        // A password is taken exactly as written; other fields without surrounding blanks.
        let trimmed = value.trim();
        let given = (!trimmed.is_empty()).then(|| trimmed.to_string());
        match *column {
            "aor" => line.aor = trimmed.to_string(),
            "password" => line.password = (!value.is_empty()).then_some(value),
            "username" => line.username = given,
            "pool" => line.pool = given,
            "ha1_md5" => line.ha1_md5 = given,
            "ha1_sha256" => line.ha1_sha256 = given,
            "bindings_max" => {
                line.bindings_max = given
                    .map(|text| match text.parse::<u32>() {
                        Ok(max) if max >= 1 => Ok(max),
                        _ => Err(format!(
                            "bindings_max {text:?} is not a whole number from 1"
                        )),
                    })
                    .transpose()?;
            }
            "enabled" => {
                line.enabled = match trimmed.to_ascii_lowercase().as_str() {
                    "" | "true" | "yes" | "1" => true,
                    "false" | "no" | "0" => false,
                    other => return Err(format!("enabled {other:?} is not true or false")),
                }
            }
            _ => {}
        }
    }
    if line.aor.is_empty() {
        return Err("no aor".into());
    }
    line.aor = roster::admin_api::users::canonical_aor(&line.aor)?;
    let hashes = line.ha1_md5.is_some() || line.ha1_sha256.is_some();
    match (&line.password, hashes) {
        (Some(_), true) => Err("a password and HA1 hashes: give one or the other".into()),
        (None, false) => Err("no password and no HA1 hash".into()),
        _ => Ok(line),
    }
}

/// Every line as the user it sends, checked as the CMS checks it (hashes computed from
/// passwords in `realm`), and no AOR or digest user name twice; or every error, by line.
pub fn check(
    lines: &[ImportLine],
    info: &DirectoryInfo,
    realm: &str,
) -> Result<Vec<Checked>, Vec<String>> {
    let mut checked = Vec::with_capacity(lines.len());
    let mut errors = Vec::new();
    let mut aors: HashMap<String, usize> = HashMap::with_capacity(lines.len());
    let mut usernames: HashMap<String, usize> = HashMap::with_capacity(lines.len());
    for line in lines {
        match user_of(line, info, realm) {
            Ok((user, record)) => {
                if let Some(first) = aors.insert(record.aor.clone(), line.line) {
                    errors.push(format!(
                        "line {}: {} appears again (first on line {first})",
                        line.line, record.aor
                    ));
                    continue;
                }
                let username = record.credentials.username.clone();
                if let Some(first) = usernames.insert(username.clone(), line.line) {
                    errors.push(format!(
                        "line {}: digest user name {username:?} appears again (first on line \
                         {first})",
                        line.line
                    ));
                    continue;
                }
                checked.push(Checked {
                    line: line.line,
                    user,
                    record,
                });
            }
            Err(error) => errors.push(format!("line {}: {error}", line.line)),
        }
    }
    if errors.is_empty() {
        Ok(checked)
    } else {
        Err(errors)
    }
}

/// The user `line` describes, and its record.
fn user_of(
    line: &ImportLine,
    info: &DirectoryInfo,
    realm: &str,
) -> Result<(NewUser, UserRecord), String> {
    let aor = roster::admin_api::users::canonical_aor(&line.aor)?;
    let username = match &line.username {
        Some(username) => username.clone(),
        None => user_part(&aor).map_err(|error| error.to_string())?,
    };
    let mut user = match &line.password {
        Some(password) => NewUser::from_password(&aor, &username, realm, password),
        None => NewUser {
            aor: aor.clone(),
            pool: None,
            username,
            ha1_md5: line.ha1_md5.clone(),
            ha1_sha256: line.ha1_sha256.clone(),
            bindings_max: None,
            enabled: true,
        },
    };
    user.pool = line.pool.clone();
    user.bindings_max = line.bindings_max;
    user.enabled = line.enabled;
    let record = user.to_record(|pool| match pool {
        None => Ok(info.cms_pool.id),
        Some(name) => info
            .pools
            .iter()
            .find(|known| known.pool.name == name)
            .map(|known| known.pool.id)
            .ok_or_else(|| {
                format!(
                    "pool {name:?} is not in the deployment (pools: {})",
                    pool_names(info)
                )
            }),
    })?;
    Ok((user, record))
}

/// Every user of the directory: AOR → digest user name.
async fn existing_users(client: &mut NodeClient) -> anyhow::Result<HashMap<String, String>> {
    let mut users = HashMap::new();
    let mut offset = 0;
    loop {
        let path = format!("{USERS_PATH}?offset={offset}&limit={USERS_PAGE_MAX}");
        let page: UserPage = client
            .get(&path)
            .await
            .context("cannot list the directory's users")?
            .value;
        let got = page.users.len();
        for user in page.users {
            users.insert(user.aor, user.username);
        }
        offset += got;
        if got == 0 || offset >= page.total {
            return Ok(users);
        }
    }
}

/// Lines that conflict with the directory as it is (`existing`: AOR → digest user name): an
/// AOR it holds (without `replace`), a digest user name another of its AORs holds.
pub fn conflicts(
    checked: &[Checked],
    existing: &HashMap<String, String>,
    replace: bool,
) -> Result<(), Vec<String>> {
    let holders: HashMap<&str, &str> = existing
        .iter()
        .map(|(aor, username)| (username.as_str(), aor.as_str()))
        .collect();
    let in_file: std::collections::HashSet<&str> = checked
        .iter()
        .map(|user| user.record.aor.as_str())
        .collect();
    let mut errors = Vec::new();
    for user in checked {
        let aor = user.record.aor.as_str();
        if !replace && existing.contains_key(aor) {
            errors.push(format!(
                "line {}: user {aor} exists already (--replace replaces existing users)",
                user.line
            ));
            continue;
        }
        let username = user.record.credentials.username.as_str();
        // A holder that the file replaces gives its name up (replaced under another name).
        let taken = holders
            .get(username)
            .filter(|holder| **holder != aor && !(replace && in_file.contains(**holder)));
        if let Some(holder) = taken {
            errors.push(format!(
                "line {}: digest user name {username:?} is taken by {holder}",
                user.line
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The encoded size of `record` in a CMS command (bincode, as the log stores it).
fn encoded_size(record: &UserRecord) -> usize {
    roster_raft::codec::encode::<_, { roster_raft::ENTRY_SIZE_MAX }>("user record", record)
        .map_or(COMMAND_RECORD_BYTES_MAX, |bytes| bytes.len())
}

/// The progress bar on standard error, hidden when it is not a terminal.
fn progress(total: u64) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template(
        "[{elapsed_precise}] {bar:40} {pos}/{len} users ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style);
    }
    bar
}

/// `errors` as one error: the first [`ERRORS_SHOWN_MAX`], then how many more.
fn listed(what: &str, errors: &[String]) -> anyhow::Error {
    let mut text = format!("{} problem(s) in {what}:", errors.len());
    for error in errors.iter().take(ERRORS_SHOWN_MAX) {
        text.push_str("\n  ");
        text.push_str(error);
    }
    if errors.len() > ERRORS_SHOWN_MAX {
        text.push_str(&format!(
            "\n  ... and {} more",
            errors.len() - ERRORS_SHOWN_MAX
        ));
    }
    anyhow::anyhow!(text)
}

#[cfg(test)]
mod tests {
    use roster::admin_api::users::{PoolName, PoolUsers, ReplicaView};
    use roster_cms::USERS_PER_COMMAND_MAX;

    use super::*;

    fn info() -> DirectoryInfo {
        let pool = |id: roster_topology::PoolId, name: &str| PoolName {
            id,
            name: name.into(),
        };
        DirectoryInfo {
            realm: Some("example.com".into()),
            domains: vec!["example.com".into()],
            cms_pool: pool(1, "east"),
            pool: pool(1, "east"),
            users: 0,
            pools: vec![
                PoolUsers {
                    pool: pool(1, "east"),
                    users: 0,
                },
                PoolUsers {
                    pool: pool(2, "west"),
                    users: 0,
                },
            ],
            users_per_command_max: 256,
            replica: ReplicaView {
                kind: "cms".into(),
                applied_index: Some(1),
            },
        }
    }

    #[test]
    fn fields_follow_csv_quoting() {
        assert_eq!(fields("a,b,,c").expect("ok"), ["a", "b", "", "c"]);
        assert_eq!(
            fields("\"p,w\",\"say \"\"hi\"\"\",x\r").expect("ok"),
            ["p,w", "say \"hi\"", "x"]
        );
        assert_eq!(fields("\"\"").expect("ok"), [""]);
        assert!(fields("\"open").is_err());
        assert!(fields("a\"b").is_err());
        assert!(fields("\"a\"b").is_err());
    }

    #[test]
    fn lines_are_read_by_the_headers_columns() {
        let text = "Password,aor,pool,bindings_max,enabled\n\
                    \"s3cr,t\",sip:alice@example.com,west,2,no\n\
                    \n\
                    pw,sip:bob@example.com,,,\n";
        let lines = parse(text).expect("valid");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line, 2);
        assert_eq!(lines[0].password.as_deref(), Some("s3cr,t"));
        assert_eq!(lines[0].pool.as_deref(), Some("west"));
        assert_eq!((lines[0].bindings_max, lines[0].enabled), (Some(2), false));
        assert_eq!(lines[1].line, 4);
        assert_eq!((lines[1].pool.clone(), lines[1].enabled), (None, true));
    }

    #[test]
    fn every_bad_line_is_named() {
        let text = "aor,password,ha1_md5,bindings_max\n\
                    sip:a@example.com,pw,,0\n\
                    sip:b@example.com,,,\n\
                    sip:c@example.com,pw,0123456789abcdef0123456789abcdef,\n\
                    sip:d@example.com,pw\n\
                    sip:e@example.com,pw,,x\n";
        let errors = parse(text).unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:#?}");
        for (error, line) in errors.iter().zip(2..) {
            assert!(error.starts_with(&format!("line {line}: ")), "{error}");
        }
        assert!(parse("").is_err());
        let unknown = parse("aor,realm\n").unwrap_err();
        assert!(
            unknown[0].contains("unknown column \"realm\""),
            "{unknown:?}"
        );
        assert!(parse("password\npw\n").unwrap_err()[0].contains("no aor column"));
    }

    #[test]
    fn checks_hash_passwords_resolve_pools_and_find_duplicates() {
        let text = "aor,password,username,pool\n\
                    sip:alice@EXAMPLE.com,pw,,west\n\
                    sip:bob@example.com,pw,bobby,\n\
                    sip:alice@example.com,pw,alice2,\n\
                    sip:carol@example.com,pw,bobby,\n\
                    sip:dave@example.com,pw,,mars\n";
        let lines = parse(text).expect("parses");
        let errors = check(&lines, &info(), "example.com").unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].starts_with("line 4: sip:alice@example.com appears again (first on line 2)")
        );
        assert!(errors[1].starts_with("line 5: digest user name \"bobby\""));
        assert!(errors[2].starts_with("line 6: pool \"mars\""));
        let good = check(&lines[..2], &info(), "example.com").expect("valid");
        assert_eq!(good[0].record.home, 2);
        assert_eq!(good[1].record.home, 1, "the CMS's pool by default");
        assert_eq!(good[1].record.credentials.username, "bobby");
        let expected = roster_auth::Credentials::from_password("alice", "example.com", "pw");
        assert_eq!(good[0].user.ha1_md5, expected.ha1_md5);
        assert_eq!(good[0].user.ha1_sha256, expected.ha1_sha256);
        let json = serde_json::to_string(&good[0].user).expect("json");
        assert!(
            !json.contains("\"pw\"") && !json.contains("password"),
            "{json}"
        );
    }

    #[test]
    fn users_the_directory_holds_stop_the_import_unless_replaced() {
        let lines = parse("aor,password\nsip:alice@example.com,pw\nsip:bob@example.com,pw\n")
            .expect("parses");
        let checked = check(&lines, &info(), "example.com").expect("valid");
        let existing: HashMap<String, String> = [
            ("sip:alice@example.com".to_string(), "alice".to_string()),
            ("sip:robert@example.com".to_string(), "bob".to_string()),
        ]
        .into();
        let errors = conflicts(&checked, &existing, false).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].starts_with("line 2: user sip:alice@example.com exists already"));
        assert!(errors[1].starts_with("line 3: digest user name \"bob\" is taken by sip:robert"));
        let errors = conflicts(&checked, &existing, true).unwrap_err();
        assert_eq!(
            errors.len(),
            1,
            "replacing alice is fine, bob's name is still taken"
        );
        assert!(conflicts(&checked, &HashMap::new(), false).is_ok());
    }

    #[test]
    fn a_full_command_fits_a_log_entry() {
        let long = |i: usize| {
            let text = format!(
                "aor,username,password\nsip:{}{i:04}@example.com,{}{i:04},pw\n",
                "a".repeat(230),
                "n".repeat(120)
            );
            let lines = parse(&text).expect("parses");
            check(&lines, &info(), "example.com")
                .expect("valid")
                .remove(0)
                .record
        };
        let records: Vec<UserRecord> = (0..600).map(long).collect();
        let runs = command_runs(&records, COMMAND_RECORD_BYTES_MAX, encoded_size);
        assert!(
            runs.iter().all(|run| run.len() < USERS_PER_COMMAND_MAX),
            "long users need smaller commands: {runs:?}"
        );
        for run in runs {
            let request = roster_raft::GroupRequest::cms(
                u64::MAX,
                u64::MAX,
                roster_cms::CmsCommand::PutUsers {
                    users: records[run].to_vec(),
                    replace: true,
                },
            );
            request.check_size().expect("every command fits");
        }
    }
}
