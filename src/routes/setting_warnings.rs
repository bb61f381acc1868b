//! Warnings, at `serve` and `routes`, about settings that are valid but do not
//! do what they seem to: nothing else would say so.

use super::RouteTable;

/// Warns, at `serve` and `routes`, of settings that do not do what they seem
/// to: they are valid, so nothing else would say so.
pub fn report_setting_problems(settings: &crate::config::Settings, table: &RouteTable) {
    report_unmatched_sections(settings, table);
    report_overridden_keys(settings, table);
    report_keys_warm_functions_ignore(table);
    report_lambda_for_handler_modules(settings, table);
    report_header_named_env(table);
    report_unapplied_vercel_keys(settings);
    report_unread_env_files(settings);
}

/// Warns about `.env.local`, `.env.development` and their kin beside DIR:
/// Vercel and Next.js read them (`vercel env pull` writes `.env.local`), so a
/// project's secrets are often there, and here only `.env` is read. Named
/// from a list: templates (`.env.example`) and other tools' files
/// (dotenvx's `.env.keys`) are no variables to copy.
fn report_unread_env_files(settings: &crate::config::Settings) {
    const READ_ELSEWHERE: [&str; 8] = [
        ".env.local",
        ".env.development",
        ".env.development.local",
        ".env.production",
        ".env.production.local",
        ".env.preview",
        ".env.test",
        ".env.test.local",
    ];
    let Some(project) = settings.document_root.parent() else {
        return;
    };
    let mut unread: Vec<&str> = READ_ELSEWHERE
        .into_iter()
        .filter(|name| project.join(name).is_file())
        .collect();
    if unread.is_empty() {
        return;
    }
    unread.sort();
    tracing::warn!(
        files = %unread.join(", "),
        "not read: watchdog gives functions the variables of `.env` beside DIR only; copy those they need into it"
    );
}

/// Warns about what a vercel.json asks for that watchdog does not do (an
/// Express app's catch-all rewrite, CORS headers), which would otherwise be
/// answered differently with no word.
fn report_unapplied_vercel_keys(settings: &crate::config::Settings) {
    if settings.unapplied_vercel_keys.is_empty() {
        return;
    }
    tracing::warn!(
        keys = %settings.unapplied_vercel_keys.join(", "),
        "vercel.json: these keys are not applied here; watchdog routes by the files in DIR and reads only `crons` and `functions.*.maxDuration` from vercel.json (a function sets its own response headers; a redirect can be a function that answers with `Location:`; variables go in a .env beside DIR)"
    );
}

/// Warns about a variable of the functions' environment named like a request
/// header's (`HTTP_X_TENANT` is `X-Tenant`'s): a request that sends that
/// header replaces it, one that does not leaves it, and the function cannot
/// tell which it got. Names no header becomes are exempt: `HTTP_PROXY`
/// (httpoxy), and those of the body's headers, which reach a function as
/// `CONTENT_*` or not at all.
fn report_header_named_env(table: &RouteTable) {
    const NO_HEADER_BECOMES: [&str; 4] = [
        "HTTP_PROXY",
        "HTTP_CONTENT_TYPE",
        "HTTP_CONTENT_LENGTH",
        "HTTP_TRANSFER_ENCODING",
    ];
    let mut named: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for function in &table.functions {
        for (name, _) in &function.settings.env {
            // Only a name a header can become: upper-case letters, digits, `_`.
            if let Some(name) = name.to_str()
                && let Some(header) = name.strip_prefix("HTTP_")
                && !header.is_empty()
                && header
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                && !NO_HEADER_BECOMES.contains(&name)
            {
                named.entry(name).or_default().push(&function.pattern);
            }
        }
    }
    for (name, routes) in named {
        // ASCII only (checked above): `X_TENANT` is `X-Tenant`.
        let header: Vec<String> = (name["HTTP_".len()..].split('_'))
            .map(|word| {
                let (first, rest) = word.split_at(word.len().min(1));
                first.to_owned() + &rest.to_ascii_lowercase()
            })
            .collect();
        let header = header.join("-");
        tracing::warn!(
            variable = name,
            header = %header,
            functions = routes.len(),
            example = routes[0],
            hint = "rename the variable (it is set by --env, .env, `env` in watchdog.toml or --pass-env)",
            "a variable of the functions' environment is named like a request header's: a request with that header replaces it"
        );
    }
}

/// Warns of the keys that shape a CGI program's answer or environment set on
/// functions that run warm, where they do nothing: a worker (or handler
/// module) writes its own status and headers and starts with its environment
/// once. `watchdog routes` lists them all the same, as what was set.
fn report_keys_warm_functions_ignore(table: &RouteTable) {
    let mut ignored: std::collections::BTreeMap<Vec<&str>, Vec<&str>> = Default::default();
    for function in &table.functions {
        let s = &function.settings;
        if s.warm.is_none() {
            continue;
        }
        let keys: Vec<&str> = [
            (s.output == crate::config::file::OutputMode::Raw, "output"),
            (s.content_type.is_some(), "content_type"),
            (!s.exit_status.is_empty(), "exit_status"),
            (
                s.env_style == crate::config::file::EnvStyle::Openfaas,
                "env_style",
            ),
        ]
        .into_iter()
        .filter_map(|(set, key)| set.then_some(key))
        .collect();
        if !keys.is_empty() {
            ignored.entry(keys).or_default().push(&function.pattern);
        }
    }
    for (keys, routes) in ignored {
        tracing::warn!(
            keys = %keys.join(", "),
            functions = routes.len(),
            example = routes[0],
            hint = "these apply to CGI runs only; functions with `warm` and handler modules (always warm) ignore them: give them a section whose glob names the CGI files only (e.g. \"legacy/*.sh\")",
            "settings that do nothing for functions that run warm"
        );
    }
}

/// Warns of handler modules a section gives `protocol = "lambda"`: the Node
/// adapter serves HTTP, so they run with it anyway (given lambda, the adapter
/// crashed at start, and every request was a 502).
fn report_lambda_for_handler_modules(settings: &crate::config::Settings, table: &RouteTable) {
    let modules: Vec<&str> = (table.functions.iter())
        .filter(|function| function.file.runner.node_module)
        .filter(|function| {
            settings
                .function(&function.file.relative)
                .warm
                .is_some_and(|warm| warm.protocol == crate::config::file::WarmProtocol::Lambda)
        })
        .map(|function| function.file.relative.as_str())
        .collect();
    if let Some(example) = modules.first() {
        tracing::warn!(
            modules = modules.len(),
            example,
            hint = "a handler module (`export default function handler(req, res)`) runs through watchdog's Node adapter, over HTTP; for the Lambda Runtime API, make the file an executable that polls it",
            "protocol = \"lambda\" does not apply to handler modules: they run with protocol = \"http\""
        );
    }
}

/// Warns of each key a `[functions."glob"]` section sets that reaches none
/// of its files: a section with fewer wildcards sets it too and wins (CONTRACT
/// §6), as a `"**"` of defaults does over `"reports/**/*.sh"`. Without this
/// line the narrower-looking section's value is simply not in effect.
fn report_overridden_keys(settings: &crate::config::Settings, table: &RouteTable) {
    let files: Vec<&str> = (table.functions.iter())
        .map(|function| function.file.relative.as_str())
        .collect();
    for overridden in settings.rules.overridden(&files) {
        tracing::warn!(
            section = %format!("functions.\"{}\"", overridden.glob),
            key = overridden.key,
            by = %format!("functions.\"{}\"", overridden.by),
            at = %format!("{}:{}", overridden.source.file.display(), overridden.source.line),
            hint = "the glob with fewer wildcards wins, then the longer one: leave the key out of the other section, or give that section a glob that does not match these files",
            "this key is overridden for every file its section matches"
        );
    }
}

/// Warns of each `[functions."glob"]` section that applies to no file below
/// DIR: its settings (a timeout, a secret, a warm pool) are silently not in
/// effect, most often because the glob names DIR itself or leaves out the
/// extension.
fn report_unmatched_sections(settings: &crate::config::Settings, table: &RouteTable) {
    let files: Vec<&str> = (table.functions.iter())
        .map(|function| function.file.relative.as_str())
        .chain(
            table
                .skipped
                .iter()
                .map(|skipped| skipped.relative.as_str()),
        )
        .collect();
    let dir_name = settings
        .dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    for (glob, source) in settings.rules.unmatched(&files) {
        let below_dir = (glob.trim_start_matches('/').strip_prefix(dir_name.as_str()))
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|_| !dir_name.is_empty());
        let hint = match below_dir {
            Some(relative) => format!("globs are relative to DIR: write \"{relative}\""),
            None => "globs are relative to DIR and match file names with their extension (\"hello.sh\", \"reports/*.sh\")".to_owned(),
        };
        tracing::warn!(
            section = %format!("functions.\"{glob}\""),
            at = %format!("{}:{}", source.file.display(), source.line),
            %hint,
            "this section matches no file below DIR, so its settings apply to nothing"
        );
    }
}
