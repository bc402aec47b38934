//! Where the IDX files come from: an explicit folder, the repository's copy, the cache, or a
//! download.
//!
//! Order: `--data-dir` / `ORGANICS_DATA_DIR` if given (the files must be there); else the
//! copy that ships in the repository's `data/<name>/` folder (MNIST only), checked against
//! the known size and SHA-256 of each `.gz` file; else the cache folder that burn-dataset
//! uses (`<cache>/burn-dataset/<name>/{train,test}/`), so downloads are shared with Burn's
//! own `MnistDataset`; else a download into that cache. A folder may hold the files flat or
//! in `train/` and `test/` subfolders, raw or `.gz`.

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

    /// Published SHA-256 of the `.gz` files, in [`FILES`] order, for a data set whose
    /// decompressed sums are not published (Fashion-MNIST: those of the files its authors
    /// distribute). MNIST has none here: its `.gz` files differ between distributions (the
    /// repository's copy and the mirror's are compressed differently), its IDX bytes do not.
    pub fn gz_checksums(self) -> Option<[&'static str; 4]> {
        match self {
            DatasetName::Mnist => None,
            DatasetName::FashionMnist => Some([
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            ]),
        }
    }
}

/// A data file that is not the standard file of its data set: it may be a deliberate custom
/// set, so this is a warning, not an error (a file in the other split's role is an error:
/// [`DataError::WrongRole`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecognised {
    /// The file.
    pub path: PathBuf,
    /// The data set it was expected to belong to.
    pub dataset: DatasetName,
    /// Its SHA-256.
    pub found: String,
    /// The published SHA-256 it differs from.
    pub expected: &'static str,
}

impl fmt::Display for Unrecognised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not the standard {} file (SHA-256 {}, published {}); results on it will not compare with published ones",
            self.path.display(),
            self.dataset,
            self.found,
            self.expected
        )
    }
}

/// One `.gz` file of a copy shipped in the repository: its name, size in bytes and SHA-256.
type ShippedFile = (&'static str, u64, &'static str);

/// The `.gz` files of `data/mnist/` (its README lists the same sums), in [`FILES`] order.
/// They are checked by size and hash of the compressed bytes, which is cheaper than
/// decompressing before the check (the decompressed files' sums are in
/// [`DatasetName::checksums`]).
const SHIPPED_MNIST: [ShippedFile; 4] = [
    (
        "train-images-idx3-ubyte.gz",
        9_719_438,
        "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        28_857,
        "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        1_616_508,
        "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        4_517,
        "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
    ),
];

impl DatasetName {
    /// The folder of the copy that ships in this repository (`data/<name>/` at the workspace
    /// root), if this data set ships and the folder exists. The path is fixed when the crate
    /// is compiled, so it is found from any working directory; a build of the crate outside
    /// the repository (from a registry) has no such folder and gets `None`.
    pub fn shipped_dir(self) -> Option<PathBuf> {
        self.shipped_files()?;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data")
            .join(self.dir_name());
        dir.is_dir().then_some(dir)
    }

    /// Names, sizes and hashes of the shipped `.gz` files, if this data set ships.
    fn shipped_files(self) -> Option<&'static [ShippedFile; 4]> {
        match self {
            DatasetName::Mnist => Some(&SHIPPED_MNIST),
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
    /// The copy shipped in the repository (default: [`DatasetName::shipped_dir`]); used
    /// when it holds all four files, after checking each one's size and SHA-256.
    pub shipped_dir: Option<PathBuf>,
    /// The cache root (default: the platform cache folder + `burn-dataset`).
    pub cache_root: Option<PathBuf>,
    /// Whether a download may be tried.
    pub download: bool,
    /// The URL prefix to download from (default: [`DatasetName::mirror`]).
    pub mirror: Option<String>,
}

impl DataSource {
    /// The default source for `dataset`: `ORGANICS_DATA_DIR` if set, else the repository's
    /// copy, else cache, else download.
    pub fn new(dataset: DatasetName) -> Self {
        let data_dir = std::env::var_os(DATA_DIR_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Self {
            dataset,
            data_dir,
            shipped_dir: dataset.shipped_dir(),
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
            return find_in(dir).map_err(|missing| match blocked_path(dir) {
                Some(path) => DataError::NotAFile { path },
                None => self.not_found(missing, vec![dir.clone()], String::new()),
            });
        }
        let mut searched = Vec::new();
        if let Some(dir) = &self.shipped_dir {
            if let Some(files) = self.shipped_copy(dir)? {
                return Ok(files);
            }
            searched.push(dir.clone());
        }
        let cache = self.cache_dir();
        searched.push(cache.clone());
        let missing = match find_in(&cache) {
            Ok(files) => return Ok(files),
            Err(missing) => missing,
        };
        if !self.download {
            return Err(self.not_found(missing, searched, " (downloads disabled)".into()));
        }
        match self.download_missing(&cache, &missing) {
            Ok(()) => find_in(&cache).map_err(|m| self.not_found(m, searched, String::new())),
            Err(reason) => {
                Err(self.not_found(missing, searched, format!("; download failed: {reason}")))
            }
        }
    }

    /// The files among `files` that are not the standard ones of the data set, judged by
    /// SHA-256: of the IDX bytes (decompressed if need be) where those sums are published,
    /// else of a `.gz` file's compressed bytes. Files of the repository's copy (already
    /// checked by [`DataSource::locate`]) and files with no published sum to compare with are
    /// not judged; a file that cannot be read or decompressed is left to the loader, which
    /// reports it.
    pub fn unrecognised(&self, files: &DataFiles) -> Vec<Unrecognised> {
        let shipped = self
            .shipped_dir
            .as_ref()
            .and_then(|d| d.canonicalize().ok());
        let paths = [
            &files.train_images,
            &files.train_labels,
            &files.test_images,
            &files.test_labels,
        ];
        let mut found = Vec::new();
        for (index, path) in paths.into_iter().enumerate() {
            let folder = path.parent().and_then(|p| p.canonicalize().ok());
            if shipped.is_some() && folder == shipped {
                continue;
            }
            let gz = path.extension().is_some_and(|e| e == "gz");
            let judged = match (self.dataset.checksums(), self.dataset.gz_checksums()) {
                (Some(sums), _) => read_maybe_gz(path, 16 + MAX_ITEMS * PIXELS as u64)
                    .ok()
                    .map(|bytes| (bytes, sums[index])),
                (None, Some(sums)) if gz => std::fs::read(path).ok().map(|b| (b, sums[index])),
                _ => None,
            };
            let Some((bytes, expected)) = judged else {
                continue;
            };
            let sum = hex(&Sha256::digest(&bytes));
            if sum != expected {
                found.push(Unrecognised {
                    path: path.clone(),
                    dataset: self.dataset,
                    found: sum,
                    expected,
                });
            }
        }
        found
    }

    /// The repository's copy in `dir`, checked, or `None` when it does not hold all four
    /// `.gz` files (a checkout without the data folder falls through to the cache). A file
    /// that is there but differs from the shipped one is an error, not a fall-through: the
    /// copy was changed, and training on it silently would make results incomparable.
    fn shipped_copy(&self, dir: &Path) -> Result<Option<DataFiles>, DataError> {
        let Some(shipped) = self.dataset.shipped_files() else {
            return Ok(None);
        };
        let paths = shipped.map(|(name, _, _)| dir.join(name));
        if !paths.iter().all(|p| p.is_file()) {
            return Ok(None);
        }
        for (path, &(_, size, sum)) in paths.iter().zip(shipped) {
            verify_shipped(path, size, sum)?;
        }
        let [train_images, train_labels, test_images, test_labels] = paths;
        Ok(Some(DataFiles {
            train_images,
            train_labels,
            test_images,
            test_labels,
        }))
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
        // Only the standard mirror serves the published files; another mirror (a test
        // server, a custom set) is judged by the decompressed sums where known.
        if let Some(sums) = self.dataset.gz_checksums()
            && self.mirror.is_none()
        {
            let compressed = hex(&Sha256::digest(
                std::fs::read(gz_path).map_err(io(gz_path))?,
            ));
            if compressed != sums[index] {
                return Err(DataError::Checksum {
                    path: gz_path.to_path_buf(),
                    expected: sums[index].into(),
                    found: compressed,
                });
            }
        }
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

/// Checks one shipped file's size, then its SHA-256.
fn verify_shipped(path: &Path, size: u64, sum: &str) -> Result<(), DataError> {
    let found_size = std::fs::metadata(path).map_err(io(path))?.len();
    let found = if found_size == size {
        hex(&Sha256::digest(std::fs::read(path).map_err(io(path))?))
    } else {
        format!("(not computed: {found_size} bytes, expected {size})")
    };
    if found != sum {
        return Err(DataError::ShippedChanged {
            path: path.to_path_buf(),
            expected: sum.into(),
            found,
        });
    }
    Ok(())
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

/// Where `dir` has something under a data file's name that is not a regular file (a folder,
/// a dangling or looping link), the first such path.
fn blocked_path(dir: &Path) -> Option<PathBuf> {
    FILES.iter().enumerate().find_map(|(i, name)| {
        let split = if i < 2 { "train" } else { "test" };
        [
            dir.join(name),
            dir.join(format!("{name}.gz")),
            dir.join(split).join(name),
            dir.join(split).join(format!("{name}.gz")),
        ]
        .into_iter()
        .find(|p| p.symlink_metadata().is_ok() && !p.is_file())
    })
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
