//! The command-line flags of the bench binaries (`harness = false`), parsed one way for all
//! of them: each bench declares its knobs once with [`params!`] (name, type, defaults), and
//! every flag takes its default, then an environment variable if the bench has a prefix
//! for them (`CRAWL_NODES` for `--nodes`), then `--name value` or `--name=value`. Every
//! value is a non-negative number. `cargo bench` passes `--bench`; without it (as `cargo
//! test --benches` runs a bench) the smoke defaults apply.

use std::collections::HashMap;

/// Declares a bench's knobs: the struct `Params`, one field a flag, and
/// `Params::from_flags(env_prefix)`, which parses them (see [`Flags::parse`]). The field
/// `probe_timeout` is the flag `--probe-timeout` and the variable `PREFIX_PROBE_TIMEOUT`;
/// `= 2` is its default, `= 1_000_000, smoke 20_000` a default and the smaller one of a
/// smoke run. The module must be included as `flags`.
macro_rules! params {
    ($( $(#[$doc:meta])* $field:ident: $ty:ty = $full:literal $(, smoke $smoke:literal)?; )*) => {
        /// The bench's knobs, one a flag.
        #[derive(Debug, Clone)]
        struct Params {
            $( $(#[$doc])* $field: $ty, )*
        }

        impl Params {
            /// The flags, with their defaults.
            const FLAGS: &'static [crate::flags::Flag] = &[$(
                crate::flags::Flag::new(
                    stringify!($field),
                    $full as f64,
                    crate::flags::params!(@smoke $full $($smoke)?),
                ),
            )*];

            /// Parses the flags, each after its environment variable `env_prefix_NAME`.
            fn from_flags(env_prefix: Option<&str>) -> Result<Params, String> {
                let f = crate::flags::Flags::parse(Params::FLAGS, env_prefix)?;
                Ok(Params {
                    $( $field: f.get(stringify!($field)) as $ty, )*
                })
            }
        }
    };
    (@smoke $full:literal) => { $full as f64 };
    (@smoke $full:literal $smoke:literal) => { $smoke as f64 };
}
pub(crate) use params;

/// One flag of a bench: its name and its defaults.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// The name as a field (`probe_timeout` for `--probe-timeout`).
    pub name: &'static str,
    /// The default under `cargo bench` (with `--bench`).
    pub full: f64,
    /// The default of a smoke run (without `--bench`, as `cargo test --benches` runs it).
    pub smoke: f64,
}

impl Flag {
    /// Returns a flag with its default under `cargo bench` and in a smoke run.
    pub const fn new(name: &'static str, full: f64, smoke: f64) -> Flag {
        Flag { name, full, smoke }
    }
}

/// The values of a bench's flags, each resolved from its default, its environment
/// variable and the command line.
#[derive(Debug)]
pub struct Flags {
    values: HashMap<&'static str, f64>,
}

impl Flags {
    /// Parses the process's environment and arguments for the flags of `table`; with an
    /// `env_prefix` (`"CRAWL"`), each flag is also read from `PREFIX_NAME`.
    ///
    /// # Errors
    /// A message naming the flag: an unknown flag (with the list of known ones), a flag
    /// without a value, or a value that is not a non-negative number.
    pub fn parse(table: &[Flag], env_prefix: Option<&str>) -> Result<Flags, String> {
        let env = |name: &str| {
            let prefix = env_prefix?;
            let var = format!("{prefix}_{}", name.to_uppercase());
            std::env::var(var).ok()
        };
        Flags::from_sources(table, env, std::env::args().skip(1))
    }

    /// Parses `args` (without the program name) over the values `env` gives.
    fn from_sources(
        table: &[Flag],
        env: impl Fn(&str) -> Option<String>,
        args: impl IntoIterator<Item = String>,
    ) -> Result<Flags, String> {
        let mut raw: HashMap<&'static str, String> = table
            .iter()
            .filter_map(|f| Some((f.name, env(f.name)?)))
            .collect();
        let full = read_args(table, args, &mut raw)?;
        let mut values = HashMap::new();
        for flag in table {
            let value = match raw.get(flag.name) {
                Some(text) => number(&dashed(flag.name), text)?,
                None if full => flag.full,
                None => flag.smoke,
            };
            values.insert(flag.name, value);
        }
        Ok(Flags { values })
    }

    /// Returns the value of the flag `name` of the table.
    ///
    /// # Panics
    /// If `name` is not in the table the flags were parsed for (a bug in the bench).
    pub fn get(&self, name: &str) -> f64 {
        *self
            .values
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not one of the bench's flags"))
    }
}

/// Reads `--name value` and `--name=value` pairs into `raw`, skipping the `--bench` that
/// `cargo bench` passes; returns whether it was there.
fn read_args(
    table: &[Flag],
    args: impl IntoIterator<Item = String>,
    raw: &mut HashMap<&'static str, String>,
) -> Result<bool, String> {
    let mut full = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--bench" {
            full = true;
            continue;
        }
        let flag = arg.strip_prefix("--").unwrap_or("");
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (flag, None),
        };
        let Some(known) = table.iter().find(|f| dashed(f.name) == name) else {
            let names: Vec<String> = table.iter().map(|f| dashed(f.name)).collect();
            return Err(format!(
                "unknown argument '{arg}' (flags: --{})",
                names.join(", --")
            ));
        };
        let value = inline
            .or_else(|| args.next())
            .ok_or_else(|| format!("--{name} needs a value"))?;
        raw.insert(known.name, value);
    }
    Ok(full)
}

/// Parses the value of `--name`: a finite, non-negative number.
fn number(name: &str, text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| format!("--{name} {text}: not a non-negative number"))
}

/// Returns the flag of the field `name`: `probe_timeout` is `--probe-timeout`.
fn dashed(name: &str) -> String {
    name.replace('_', "-")
}
