//! Shared helpers for the weft examples: a tiny command-line reader.

/// Command-line arguments as `--name value` pairs and flags.
#[derive(Debug, Clone)]
pub struct Args {
    args: Vec<String>,
}

impl Args {
    /// Reads the process arguments.
    pub fn from_env() -> Self {
        Args {
            args: std::env::args().skip(1).collect(),
        }
    }

    /// The value after the first `--name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.args.get(i + 1))
            .map(String::as_str)
    }

    /// Every value given after `--name` (repeatable options).
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.args
            .iter()
            .enumerate()
            .filter(|(_, a)| *a == name)
            .filter_map(|(i, _)| self.args.get(i + 1))
            .map(String::as_str)
            .collect()
    }

    /// The value after `--name` parsed, or `default`.
    pub fn parsed<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.value(name) {
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("invalid value for {name}: {v}");
                std::process::exit(2)
            }),
            None => default,
        }
    }

    /// True if `--name` is present.
    pub fn flag(&self, name: &str) -> bool {
        self.args.iter().any(|a| a == name)
    }
}
