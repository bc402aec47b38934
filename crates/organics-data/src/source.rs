//! Where the IDX files come from: an explicit folder, the cache, or a download.
//!
//! Order: `--data-dir` / `ORGANICS_DATA_DIR` if given (the files must be there); else the
//! cache folder that burn-dataset uses (`<cache>/burn-dataset/<name>/{train,test}/`), so
//! downloads are shared with Burn's own `MnistDataset`; else a download into that cache.
//! A folder may hold the files flat or in `train/` and `test/` subfolders, raw or `.gz`.

use std::fmt;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{DataError, io};
use crate::idx::{MAX_ITEMS, PIXELS, parse_images, parse_labels, read_maybe_gz};

/// Environment variable naming a folder with the four IDX files.
pub const DATA_DIR_ENV: &str = "ORGANICS_DATA_DIR";

/// The four files of a split-less IDX data set, in the order train images, train labels,
/// test images, test labels.
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Which IDX data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetName {
    /// MNIST handwritten digits.
    Mnist,
    /// Fashion-MNIST (Zalando), the same format and sizes.
    FashionMnist,
}

impl DatasetName {
    /// The folder name under the cache (burn-dataset's for MNIST).
    pub fn dir_name(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
        }
    }

    /// Where the `.gz` files are downloaded from (MNIST: burn-dataset's mirror).
    pub fn mirror(self) -> &'static str {
        match self {
            DatasetName::Mnist => "https://storage.googleapis.com/cvdf-datasets/mnist/",
            DatasetName::FashionMnist => {
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
            }
        }
    }

    /// Published SHA-256 of the decompressed files, in [`FILES`] order, where known.
    pub fn checksums(self) -> Option<[&'static str; 4]> {
        match self {
            DatasetName::Mnist => Some([
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ]),
            DatasetName::FashionMnist => None,
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

impl FromStr for DatasetName {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "mnist" => Ok(DatasetName::Mnist),
            "fashion-mnist" | "fashion" => Ok(DatasetName::FashionMnist),
            other => Err(DataError::Invalid(format!(
                "unknown data set '{other}' (expected mnist or fashion-mnist)"
            ))),
        }
    }
}

/// The paths of the four files, found.
#[derive(Debug, Clone, PartialEq)]
pub struct DataFiles {
    /// Training images.
    pub train_images: PathBuf,
    /// Training labels.
    pub train_labels: PathBuf,
    /// Test images.
    pub test_images: PathBuf,
    /// Test labels.
    pub test_labels: PathBuf,
}

/// How to find (and if need be download) a data set.
#[derive(Debug, Clone)]
pub struct DataSource {
    /// Which data set.
    pub dataset: DatasetName,
    /// An explicit folder; when set, the files must be there.
    pub data_dir: Option<PathBuf>,
    /// The cache root (default: the platform cache folder + `burn-dataset`).
    pub cache_root: Option<PathBuf>,
    /// Whether a download may be tried.
    pub download: bool,
    /// The URL prefix to download from (default: [`DatasetName::mirror`]).
    pub mirror: Option<String>,
}

impl DataSource {
    /// The default source for `dataset`: `ORGANICS_DATA_DIR` if set, else cache, else download.
    pub fn new(dataset: DatasetName) -> Self {
        let data_dir = std::env::var_os(DATA_DIR_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Self {
            dataset,
            data_dir,
            cache_root: None,
            download: true,
            mirror: None,
        }
    }

    /// Use this folder (overrides `ORGANICS_DATA_DIR`).
    pub fn with_data_dir(mut self, dir: Option<PathBuf>) -> Self {
        if dir.is_some() {
            self.data_dir = dir;
        }
        self
    }

    /// The folder downloads go to: `<cache root>/<name>`.
    pub fn cache_dir(&self) -> PathBuf {
        let root = self.cache_root.clone().unwrap_or_else(|| {
            dirs::cache_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("burn-dataset")
        });
        root.join(self.dataset.dir_name())
    }

    /// Finds the four files, downloading them into the cache if they are nowhere.
    pub fn locate(&self) -> Result<DataFiles, DataError> {
        if let Some(dir) = &self.data_dir {
            if !dir.exists() {
                return Err(DataError::BadDataDir {
                    path: dir.clone(),
                    problem: "does not exist",
                });
            }
            if !dir.is_dir() {
                return Err(DataError::BadDataDir {
                    path: dir.clone(),
                    problem: "is not a directory",
                });
            }
            std::fs::read_dir(dir).map_err(io(dir))?;
            return find_in(dir)
                .map_err(|missing| self.not_found(missing, vec![dir.clone()], String::new()));
        }
        let cache = self.cache_dir();
        let missing = match find_in(&cache) {
            Ok(files) => return Ok(files),
            Err(missing) => missing,
        };
        if !self.download {
            return Err(self.not_found(missing, vec![cache], " (downloads disabled)".into()));
        }
        match self.download_missing(&cache, &missing) {
            Ok(()) => {
                find_in(&cache).map_err(|m| self.not_found(m, vec![cache.clone()], String::new()))
            }
            Err(reason) => {
                Err(self.not_found(missing, vec![cache], format!("; download failed: {reason}")))
            }
        }
    }

    fn not_found(
        &self,
        missing: Vec<String>,
        searched: Vec<PathBuf>,
        download: String,
    ) -> DataError {
        DataError::NotFound {
            dataset: self.dataset.to_string(),
            missing,
            searched,
            download,
            cache: self.cache_dir().display().to_string(),
        }
    }

    fn download_missing(&self, cache: &Path, missing: &[String]) -> Result<(), String> {
        let mirror = self
            .mirror
            .clone()
            .unwrap_or_else(|| self.dataset.mirror().to_string());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        for name in missing {
            let index = FILES
                .iter()
                .position(|f| f == name)
                .ok_or_else(|| format!("unknown file {name}"))?;
            let split = if index < 2 { "train" } else { "test" };
            let dir = cache.join(split);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let url = format!("{mirror}{name}.gz");
            let gz = fetch(&agent, &url, name)?;
            let target = dir.join(name);
            let part = dir.join(format!("{name}.gz.part"));
            std::fs::write(&part, &gz)
                .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
            let checked = self.check_download(&part, index);
            let _ = std::fs::remove_file(&part);
            let bytes = checked.map_err(|e| e.to_string())?;
            // Write under a temporary name and rename, so a file that looks complete is complete.
            let tmp = dir.join(format!("{name}.part"));
            std::fs::write(&tmp, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            std::fs::rename(&tmp, &target)
                .map_err(|e| format!("cannot rename to {}: {e}", target.display()))?;
        }
        Ok(())
    }

    /// Decompresses and validates a downloaded file; returns the raw IDX bytes.
    fn check_download(&self, gz_path: &Path, index: usize) -> Result<Vec<u8>, DataError> {
        let bytes = read_maybe_gz(gz_path, 16 + MAX_ITEMS * PIXELS as u64)?;
        if index.is_multiple_of(2) {
            parse_images(&bytes, gz_path)?;
        } else {
            parse_labels(&bytes, gz_path)?;
        }
        if let Some(sums) = self.dataset.checksums() {
            let found = hex(&Sha256::digest(&bytes));
            if found != sums[index] {
                return Err(DataError::Checksum {
                    path: gz_path.to_path_buf(),
                    expected: sums[index].into(),
                    found,
                });
            }
        }
        Ok(bytes)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads `url` into memory with a progress display on stderr.
fn fetch(agent: &ureq::Agent, url: &str, name: &str) -> Result<Vec<u8>, String> {
    let response = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
    let total = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut reader = response
        .into_body()
        .into_with_config()
        .limit(64 << 20)
        .reader();
    let terminal = std::io::stderr().is_terminal();
    let mut out = Vec::new();
    let mut buf = [0u8; 1 << 16];
    let mut shown = 0u64;
    loop {
        let read = reader.read(&mut buf).map_err(|e| format!("{url}: {e}"))?;
        if read == 0 {
            break;
        }
        out.extend_from_slice(&buf[..read]);
        let done = out.len() as u64;
        let step = if terminal { 1 << 18 } else { 1 << 22 };
        if done - shown >= step {
            shown = done;
            progress(name, done, total, terminal);
        }
    }
    progress(name, out.len() as u64, total, terminal);
    if terminal {
        eprintln!();
    }
    Ok(out)
}

fn progress(name: &str, done: u64, total: Option<u64>, terminal: bool) {
    let mb = |b: u64| b as f64 / 1e6;
    let line = match total {
        Some(t) if t > 0 => format!(
            "downloading {name}.gz: {:5.1}% ({:.1} / {:.1} MB)",
            100.0 * done as f64 / t as f64,
            mb(done),
            mb(t)
        ),
        _ => format!("downloading {name}.gz: {:.1} MB", mb(done)),
    };
    let mut err = std::io::stderr();
    let _ = if terminal {
        write!(err, "\r{line}")
    } else {
        writeln!(err, "{line}")
    };
}

/// The four files in `dir` (flat or in `train/` and `test/`, raw preferred over `.gz`), or
/// the names of those missing.
pub fn find_in(dir: &Path) -> Result<DataFiles, Vec<String>> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for (i, name) in FILES.iter().enumerate() {
        let split = if i < 2 { "train" } else { "test" };
        let candidates = [
            dir.join(name),
            dir.join(format!("{name}.gz")),
            dir.join(split).join(name),
            dir.join(split).join(format!("{name}.gz")),
        ];
        match candidates.into_iter().find(|p| p.is_file()) {
            Some(p) => found.push(p),
            None => missing.push(name.to_string()),
        }
    }
    if !missing.is_empty() {
        return Err(missing);
    }
    let mut it = found.into_iter();
    let mut next = || it.next().unwrap_or_default();
    Ok(DataFiles {
        train_images: next(),
        train_labels: next(),
        test_images: next(),
        test_labels: next(),
    })
}
