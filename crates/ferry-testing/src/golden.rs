//! [`Golden`]: reference values in a file — safetensors (what `safetensors.torch.save_file`
//! writes), NumPy's `.npz` or `.npy` — checked with [`compare`](crate::compare), and written or
//! updated under `FERRY_BLESS=1` (insta's convention), keeping the file's other entries and
//! its metadata.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ferry_core::{Error as CoreError, HostArray};
use ferry_io::{npy, safetensors};

use crate::input::{Compared, Values};
use crate::{Error, Result, Tolerance, compare};

/// The environment variable that turns checks into writes.
pub const BLESS: &str = "FERRY_BLESS";

/// Serialises the updates this process makes to golden files (tests run on many threads).
static UPDATES: Mutex<()> = Mutex::new(());

/// A golden file's format, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Safetensors,
    Npz,
    /// One array, whose entry is named by the file's stem.
    Npy,
}

/// A file of reference values, one per named entry.
///
/// ```no_run
/// # fn main() -> Result<(), ferry_testing::Error> {
/// use ferry_testing::Golden;
/// # let output = ferry_core::HostArray::from_vec(vec![2], vec![1f32, 2.])?;
/// let golden = Golden::open("tests/golden/encoder.safetensors")?;
/// golden.check("layer3.out", &output)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Golden {
    path: PathBuf,
    format: Format,
    entries: Vec<(String, HostArray)>,
    bless: bool,
}

impl Golden {
    /// Opens the golden file at `path` (`.safetensors`, `.npz` or `.npy`). A missing file is
    /// an error unless `FERRY_BLESS=1`, which creates it at the first check.
    pub fn open(path: impl AsRef<Path>) -> Result<Golden> {
        let bless = std::env::var_os(BLESS).is_some_and(|v| !v.is_empty() && v != "0");
        Golden::open_with(path, bless)
    }

    /// [`open`](Self::open) with blessing on or off, whatever the environment says.
    pub fn open_with(path: impl AsRef<Path>, bless: bool) -> Result<Golden> {
        let path = path.as_ref().to_path_buf();
        let format = match path.extension().and_then(OsStr::to_str) {
            Some("safetensors") => Format::Safetensors,
            Some("npz") => Format::Npz,
            Some("npy") => Format::Npy,
            _ => {
                return Err(CoreError::invalid_file(
                    "golden",
                    format!(
                        "{}: a golden file is .safetensors, .npz or .npy (its extension says which)",
                        path.display()
                    ),
                )
                .into());
            }
        };
        let entries = if bless && !path.exists() {
            Vec::new()
        } else {
            read(&path, format)?.0
        };
        Ok(Golden {
            path,
            format,
            entries,
            bless,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether checks write the values instead (`FERRY_BLESS=1`).
    pub fn is_blessing(&self) -> bool {
        self.bless
    }

    /// The names of the entries, as the file was opened.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// The entry called `name`, as the file was opened.
    pub fn get(&self, name: &str) -> Option<&HostArray> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// Checks `actual` against the entry `name` with the default tolerances of its dtype; an
    /// error carries the report. Under `FERRY_BLESS=1` writes `actual` as the entry instead.
    pub fn check(&self, name: &str, actual: &impl Compared) -> Result<()> {
        self.check_with(name, actual, &Tolerance::default())
    }

    /// [`check`](Self::check) with explicit tolerances.
    pub fn check_with(
        &self,
        name: &str,
        actual: &impl Compared,
        tolerance: &Tolerance,
    ) -> Result<()> {
        if self.bless {
            let host = match actual.values()? {
                Values::Host(h) => h,
                Values::View(v) => v.to_host(),
            };
            return self.write_entry(name, host);
        }
        let Some(expected) = self.get(name) else {
            let available: Vec<&str> = self.names().collect();
            return Err(Error::MissingEntry {
                path: self.path.clone(),
                name: name.into(),
                available: if available.is_empty() {
                    "no entries".into()
                } else {
                    format!("{available:?}")
                },
            });
        };
        let report = compare::compare_values(
            actual.values()?,
            &actual.origin(),
            Values::Host(expected.clone()),
            &format!("golden {name:?}"),
            tolerance,
        )?;
        if report.is_close() {
            Ok(())
        } else {
            Err(Error::GoldenMismatch {
                path: self.path.clone(),
                name: name.into(),
                report: Box::new(report),
            })
        }
    }

    /// Writes `array` as the entry `name`: the file as it is now on disk (other tests may have
    /// blessed other entries), with that entry replaced or added, written to a temporary file
    /// and renamed over the old one.
    fn write_entry(&self, name: &str, array: HostArray) -> Result<()> {
        let _serial = UPDATES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (mut entries, metadata) = if self.path.exists() {
            read(&self.path, self.format)?
        } else {
            (Vec::new(), HashMap::new())
        };
        match entries.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = array,
            None => entries.push((name.to_string(), array)),
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| CoreError::io("creating", dir, e))?;
        }
        let temporary = self
            .path
            .with_extension(format!("bless-{}.tmp", std::process::id()));
        let named = entries.iter().map(|(n, a)| (n.as_str(), a));
        match self.format {
            Format::Safetensors => safetensors::save(
                &temporary,
                named,
                (!metadata.is_empty()).then_some(metadata),
            )?,
            Format::Npz => npy::save_npz(&temporary, named, false)?,
            Format::Npy => {
                let stem = npy_entry(&self.path);
                if name != stem {
                    return Err(CoreError::invalid_file(
                        "golden",
                        format!(
                            "{}: a .npy golden file holds one entry, named {stem:?} after the file; check that name, or use a .safetensors or .npz file for several",
                            self.path.display()
                        ),
                    )
                    .into());
                }
                npy::save(&temporary, &entries[0].1)?
            }
        }
        std::fs::rename(&temporary, &self.path)
            .map_err(|e| CoreError::io("renaming into place", &self.path, e))?;
        Ok(())
    }
}

/// The one entry name of a `.npy` golden file: its stem.
fn npy_entry(path: &Path) -> String {
    path.file_stem()
        .and_then(OsStr::to_str)
        .unwrap_or_default()
        .to_string()
}

/// The entries (in file order) and metadata of a golden file.
#[allow(clippy::type_complexity)]
fn read(
    path: &Path,
    format: Format,
) -> Result<(Vec<(String, HostArray)>, HashMap<String, String>)> {
    Ok(match format {
        Format::Safetensors => {
            let file = safetensors::load(path)?;
            (file.tensors, file.metadata)
        }
        Format::Npz => (npy::load_npz(path)?, HashMap::new()),
        Format::Npy => (vec![(npy_entry(path), npy::load(path)?)], HashMap::new()),
    })
}
