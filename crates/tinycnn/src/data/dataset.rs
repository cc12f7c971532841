//! Fashion-MNIST and MNIST: where the files are looked for, how they are downloaded, and how
//! they become `f32` images and labels.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::download::{download_file, DownloadOptions};
use super::idx::read_idx;
use super::{DataError, Result};

/// Fashion-MNIST's text labels by class index, as d2l's `get_fashion_mnist_labels` prints them.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// MNIST's class names: the digits.
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// The official Fashion-MNIST download address (plain HTTP).
pub const FASHION_MNIST_URL: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";

/// The original MNIST address (plain HTTP); override it with `$TINYCNN_MNIST_URL` or
/// [`LoadOptions::base_url`] to use a mirror.
pub const MNIST_URL: &str = "http://yann.lecun.com/exdb/mnist/";

/// Maps class indices to Fashion-MNIST text labels (d2l's `get_fashion_mnist_labels`).
///
/// ```
/// assert_eq!(tinycnn::data::text_labels(&[9, 0]).unwrap(), ["ankle boot", "t-shirt"]);
/// assert!(tinycnn::data::text_labels(&[10]).is_err());
/// ```
pub fn text_labels(labels: &[u32]) -> Result<Vec<&'static str>> {
    labels
        .iter()
        .map(|&l| {
            FASHION_MNIST_CLASSES
                .get(l as usize)
                .copied()
                .ok_or_else(|| {
                    DataError::InvalidArgument(format!(
                        "label {l} is not a Fashion-MNIST class (0..=9)"
                    ))
                })
        })
        .collect()
}

/// One file of a data set: its name on the server and on disk, and the MD5 sum of that file
/// as published (checked on download only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// File name, e.g. `train-images-idx3-ubyte.gz`. A local copy may also be stored
    /// uncompressed under the name without `.gz`.
    pub name: String,
    /// Lower-case hex MD5 of the file as served.
    pub md5: String,
}

impl FileSpec {
    fn new(name: &str, md5: &str) -> Self {
        Self {
            name: name.to_string(),
            md5: md5.to_string(),
        }
    }
}

/// Describes an MNIST-layout data set: four IDX files, class names, where to look, where to
/// download from. [`DatasetSpec::fashion_mnist`] and [`DatasetSpec::mnist`] are the built-in ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSpec {
    /// Display name, e.g. `Fashion-MNIST`.
    pub name: String,
    /// Directory name used under `./data/` and `/usr/share/datasets/`.
    pub dir_name: String,
    /// Environment variable naming a directory to search (after an explicit one).
    pub dir_env: Option<String>,
    /// Environment variable overriding the download address.
    pub url_env: Option<String>,
    /// Download address the file names are appended to.
    pub default_url: String,
    /// Training images (IDX, `[N, rows, cols]`).
    pub train_images: FileSpec,
    /// Training labels (IDX, `[N]`).
    pub train_labels: FileSpec,
    /// Test images.
    pub test_images: FileSpec,
    /// Test labels.
    pub test_labels: FileSpec,
    /// Class names by label; labels must be below their count.
    pub class_names: Vec<String>,
}

impl DatasetSpec {
    /// Fashion-MNIST (Zalando), with the MD5 sums published in its README.
    pub fn fashion_mnist() -> Self {
        Self {
            name: "Fashion-MNIST".to_string(),
            dir_name: "fashion-mnist".to_string(),
            dir_env: Some("TINYCNN_DATA".to_string()),
            url_env: Some("TINYCNN_DATA_URL".to_string()),
            default_url: FASHION_MNIST_URL.to_string(),
            train_images: FileSpec::new(
                "train-images-idx3-ubyte.gz",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            ),
            train_labels: FileSpec::new(
                "train-labels-idx1-ubyte.gz",
                "25c81989df183df01b3e8a0aad5dffbe",
            ),
            test_images: FileSpec::new(
                "t10k-images-idx3-ubyte.gz",
                "bef4ecab320f06d8554ea6380940ec79",
            ),
            test_labels: FileSpec::new(
                "t10k-labels-idx1-ubyte.gz",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
            class_names: FASHION_MNIST_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// MNIST (LeCun et al.), with the MD5 sums of the original gzip files.
    pub fn mnist() -> Self {
        Self {
            name: "MNIST".to_string(),
            dir_name: "mnist".to_string(),
            dir_env: Some("TINYCNN_MNIST_DATA".to_string()),
            url_env: Some("TINYCNN_MNIST_URL".to_string()),
            default_url: MNIST_URL.to_string(),
            train_images: FileSpec::new(
                "train-images-idx3-ubyte.gz",
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            ),
            train_labels: FileSpec::new(
                "train-labels-idx1-ubyte.gz",
                "d53e105ee54ea40749a09fcbcd1e9432",
            ),
            test_images: FileSpec::new(
                "t10k-images-idx3-ubyte.gz",
                "9fb629c4189551a2d022fa330f9573f3",
            ),
            test_labels: FileSpec::new(
                "t10k-labels-idx1-ubyte.gz",
                "ec29112dd5afa0611ce80d1b7f02629c",
            ),
            class_names: MNIST_CLASSES.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn files(&self) -> [&FileSpec; 4] {
        [
            &self.train_images,
            &self.train_labels,
            &self.test_images,
            &self.test_labels,
        ]
    }

    /// The directories searched, in order. A directory named explicitly is the only one:
    /// `explicit` if given, else (when `search_defaults`) the directory in
    /// [`DatasetSpec::dir_env`] if that variable is set and not empty. Only without either are
    /// the default places searched: `./data/<dir_name>`, `/usr/share/datasets/<dir_name>`.
    pub fn candidate_dirs(&self, explicit: Option<&Path>, search_defaults: bool) -> Vec<PathBuf> {
        self.candidate_dirs_from(explicit, search_defaults, self.env_dir(search_defaults))
    }

    /// The directory named by the spec's environment variable, when it is consulted and set.
    fn env_dir(&self, search_defaults: bool) -> Option<OsString> {
        if search_defaults {
            self.dir_env
                .as_deref()
                .and_then(std::env::var_os)
                .filter(|v| !v.is_empty())
        } else {
            None
        }
    }

    fn candidate_dirs_from(
        &self,
        explicit: Option<&Path>,
        search_defaults: bool,
        env_dir: Option<OsString>,
    ) -> Vec<PathBuf> {
        // A named directory is used as given: falling back to another copy would silently
        // train on other data than the user pointed at.
        if let Some(dir) = explicit {
            return vec![dir.to_path_buf()];
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        if search_defaults {
            if let Some(env) = env_dir.filter(|v| !v.is_empty()) {
                return vec![PathBuf::from(env)];
            }
            dirs.push(Path::new("data").join(&self.dir_name));
            dirs.push(Path::new("/usr/share/datasets").join(&self.dir_name));
        }
        let mut unique = Vec::with_capacity(dirs.len());
        for d in dirs {
            if !unique.contains(&d) {
                unique.push(d);
            }
        }
        unique
    }

    fn base_url(&self, explicit: Option<&str>) -> String {
        explicit
            .map(str::to_string)
            .or_else(|| {
                self.url_env
                    .as_deref()
                    .and_then(|v| std::env::var(v).ok())
                    .filter(|v| !v.is_empty())
            })
            .unwrap_or_else(|| self.default_url.clone())
    }

    /// Why `dir` does not hold the data set: it does not exist, is no directory, or lacks
    /// some of the four files (each named, with its uncompressed alternative).
    fn what_is_missing(&self, dir: &Path) -> String {
        match fs::metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return format!("{} does not exist", dir.display())
            }
            Err(e) => return format!("{}: {e}", dir.display()),
            Ok(m) if !m.is_dir() => return format!("{} is not a directory", dir.display()),
            Ok(_) => {}
        }
        let missing: Vec<String> = self
            .files()
            .iter()
            .filter(|f| local_file(dir, &f.name).is_none())
            .map(|f| match f.name.strip_suffix(".gz") {
                Some(raw) => format!("{} (or {raw})", f.name),
                None => f.name.clone(),
            })
            .collect();
        format!(
            "{} lacks {} of the 4 files: {}",
            dir.display(),
            missing.len(),
            missing.join(", ")
        )
    }

    /// How to get the files without network.
    fn offline_hint(&self) -> String {
        let package = if self.dir_name == "fashion-mnist" {
            "on Debian or Ubuntu, `apt-get install dataset-fashion-mnist` installs them into \
             /usr/share/datasets/fashion-mnist; "
        } else {
            ""
        };
        let env = self
            .dir_env
            .as_deref()
            .map(|v| format!(" or ${v}"))
            .unwrap_or_default();
        format!(
            "to get {} without network: {package}or copy the four files ({}) into a directory \
             and name it with --data DIR{env}",
            self.name,
            self.files()
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// The four files' paths in `dir` (each as named or without `.gz`), or `None` if any is missing.
    fn find_in(&self, dir: &Path) -> Option<[PathBuf; 4]> {
        let mut found: [PathBuf; 4] = Default::default();
        for (slot, spec) in found.iter_mut().zip(self.files()) {
            *slot = local_file(dir, &spec.name)?;
        }
        Some(found)
    }
}

fn local_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let as_named = dir.join(name);
    if as_named.is_file() {
        return Some(as_named);
    }
    let raw = dir.join(name.strip_suffix(".gz")?);
    raw.is_file().then_some(raw)
}

/// Where [`load_dataset`] looks and whether it may download.
#[derive(Debug)]
pub struct LoadOptions<'a> {
    /// The directory holding the data set (the CLI's `--data DIR`): when given, no other
    /// place is searched, and files are downloaded into it only if `download` is set.
    pub dir: Option<PathBuf>,
    /// Without `dir`: use the directory in the spec's environment variable if set (and only
    /// it, never downloading into it), else search `./data/<dir_name>` and
    /// `/usr/share/datasets/<dir_name>` (default `true`).
    pub search_defaults: bool,
    /// Download missing files into the first writable candidate directory (default `true`).
    pub download: bool,
    /// Download address; default: the spec's URL environment variable, then its default URL.
    pub base_url: Option<String>,
    /// Timeout and progress callback for downloads.
    pub download_options: DownloadOptions<'a>,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        Self {
            dir: None,
            search_defaults: true,
            download: true,
            base_url: None,
            download_options: DownloadOptions::default(),
        }
    }
}

/// One half (train or test) of a data set: images as `f32` in `[0, 1]`, labels as class indices.
///
/// Buffers are reference-counted, so cloning a split or building a [`super::DataLoader`] from
/// it copies no pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// `len * rows * cols` pixels, image after image, row-major, each `byte / 255`.
    pub images: Arc<[f32]>,
    /// One class index per image.
    pub labels: Arc<[u8]>,
    /// Image height (28 for (Fashion-)MNIST).
    pub rows: usize,
    /// Image width (28 for (Fashion-)MNIST).
    pub cols: usize,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Shape of one sample, `[channels, rows, cols]` = `[1, rows, cols]`.
    pub fn sample_shape(&self) -> [usize; 3] {
        [1, self.rows, self.cols]
    }

    /// The pixels of image `index`, or `None` past the end.
    pub fn image(&self, index: usize) -> Option<&[f32]> {
        let size = self.rows * self.cols;
        self.images
            .get(index.checked_mul(size)?..index.checked_add(1)?.checked_mul(size)?)
    }

    /// The labels widened to `u32` (the loss functions' index type).
    pub fn labels_u32(&self) -> Vec<u32> {
        self.labels.iter().map(|&l| u32::from(l)).collect()
    }
}

/// A loaded data set: training and test splits plus class names.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Display name, e.g. `Fashion-MNIST`.
    pub name: String,
    /// The directory the files were read from.
    pub dir: PathBuf,
    /// Class names by label.
    pub class_names: Vec<String>,
    /// Training split (60 000 images for (Fashion-)MNIST).
    pub train: Split,
    /// Test split (10 000 images for (Fashion-)MNIST).
    pub test: Split,
}

impl Dataset {
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// The name of class `label`, or `None` if out of range.
    pub fn class_name(&self, label: u32) -> Option<&str> {
        self.class_names.get(label as usize).map(String::as_str)
    }
}

/// Fashion-MNIST loading; see [`load_dataset`] for the search order and download rules.
#[derive(Debug, Clone, Copy)]
pub struct FashionMnist;

impl FashionMnist {
    /// Loads Fashion-MNIST from `dir` as given (an error naming the missing files if it
    /// does not hold them all), or without `dir` from the default places (see
    /// [`load_dataset`]), downloading it if absent.
    pub fn load(dir: Option<&Path>) -> Result<Dataset> {
        Self::load_with(LoadOptions {
            dir: dir.map(Path::to_path_buf),
            download: dir.is_none(),
            ..LoadOptions::default()
        })
    }

    /// Loads Fashion-MNIST with full control over search, download address and progress.
    pub fn load_with(options: LoadOptions<'_>) -> Result<Dataset> {
        load_dataset(&DatasetSpec::fashion_mnist(), options)
    }
}

/// MNIST loading; see [`load_dataset`] for the search order and download rules.
#[derive(Debug, Clone, Copy)]
pub struct Mnist;

impl Mnist {
    /// Loads MNIST from `dir` as given, or without `dir` from the default places (see
    /// [`load_dataset`]), downloading it if absent.
    pub fn load(dir: Option<&Path>) -> Result<Dataset> {
        Self::load_with(LoadOptions {
            dir: dir.map(Path::to_path_buf),
            download: dir.is_none(),
            ..LoadOptions::default()
        })
    }

    /// Loads MNIST with full control over search, download address and progress.
    pub fn load_with(options: LoadOptions<'_>) -> Result<Dataset> {
        load_dataset(&DatasetSpec::mnist(), options)
    }
}

/// Finds or downloads the data set described by `spec` and decodes it.
///
/// Where: [`LoadOptions::dir`] if given, and nothing else; else (with `search_defaults`) the
/// directory in the spec's environment variable (`$TINYCNN_DATA` for Fashion-MNIST,
/// `$TINYCNN_MNIST_DATA` for MNIST) if it is
/// set and not empty, and nothing else; else `./data/<dir_name>` and
/// `/usr/share/datasets/<dir_name>` (Debian's `dataset-fashion-mnist`), the first holding all
/// four files winning. A directory named explicitly that lacks files is an error naming them,
/// never a reason to read another copy. Downloading (when allowed) fetches the missing files
/// into `dir` or the first default directory that can be created and written, never into the
/// environment variable's, each checked against its published MD5 before being renamed into
/// place; a failed download says how to get the files without network.
///
/// Local files are validated by structure (IDX headers, matching counts, image sizes, labels
/// below the class count), not by checksum: repackaged copies such as Debian's are
/// recompressed and have other sums.
pub fn load_dataset(spec: &DatasetSpec, mut options: LoadOptions<'_>) -> Result<Dataset> {
    let candidates = spec.candidate_dirs(options.dir.as_deref(), options.search_defaults);
    if candidates.is_empty() {
        return Err(DataError::InvalidArgument(format!(
            "no directory to load {} from: none given and the default search is disabled",
            spec.name
        )));
    }
    for dir in &candidates {
        if let Some(paths) = spec.find_in(dir) {
            return decode(spec, dir, &paths);
        }
    }
    let names: Vec<&str> = spec.files().iter().map(|f| f.name.as_str()).collect();
    let from_env = options.dir.is_none() && spec.env_dir(options.search_defaults).is_some();
    if from_env || (options.dir.is_some() && !options.download) {
        let (origin, advice) = if from_env {
            (
                format!(
                    "named by ${}",
                    spec.dir_env.as_deref().unwrap_or("the environment")
                ),
                "no other place is searched and nothing is downloaded into it; add the files, \
                 or unset the variable to use the default places",
            )
        } else {
            (
                "named explicitly".to_string(),
                "downloading is disabled and no other place is searched; add the files, \
                 or name another directory",
            )
        };
        return Err(DataError::NotFound {
            dataset: spec.name.clone(),
            searched: candidates.clone(),
            hint: format!(
                "{} ({origin}); {advice}",
                spec.what_is_missing(&candidates[0])
            ),
        });
    }
    if !options.download {
        return Err(DataError::NotFound {
            dataset: spec.name.clone(),
            searched: candidates,
            hint: format!(
                "downloading is disabled; put {} into one of these directories",
                names.join(", ")
            ),
        });
    }
    let Some(target) = candidates.iter().find(|d| is_writable_dir(d)) else {
        return Err(DataError::NotFound {
            dataset: spec.name.clone(),
            searched: candidates,
            hint: "none of these directories can be created and written to download into"
                .to_string(),
        });
    };
    let base_url = spec.base_url(options.base_url.as_deref());
    let missing: Vec<&FileSpec> = spec
        .files()
        .into_iter()
        .filter(|f| local_file(target, &f.name).is_none())
        .collect();
    let count = missing.len();
    for (index, file) in missing.into_iter().enumerate() {
        let url = format!("{}/{}", base_url.trim_end_matches('/'), file.name);
        download_file(
            &url,
            &target.join(&file.name),
            &file.md5,
            index,
            count,
            &mut options.download_options,
        )
        .map_err(|e| match e {
            DataError::Download { url, reason } => DataError::Download {
                url,
                reason: format!("{reason}; {}", spec.offline_hint()),
            },
            other => other,
        })?;
    }
    let paths = spec
        .find_in(target)
        .ok_or_else(|| DataError::InvalidDataset {
            name: target.display().to_string(),
            reason: format!(
                "files still missing after download: expected {}",
                names.join(", ")
            ),
        })?;
    decode(spec, target, &paths)
}

fn is_writable_dir(dir: &Path) -> bool {
    if fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join(format!(".tinycnn-write-probe-{}", std::process::id()));
    let writable = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .is_ok();
    let _ = fs::remove_file(&probe);
    writable
}

fn decode(spec: &DatasetSpec, dir: &Path, paths: &[PathBuf; 4]) -> Result<Dataset> {
    let train = decode_split(spec, &paths[0], &paths[1])?;
    let test = decode_split(spec, &paths[2], &paths[3])?;
    if (train.rows, train.cols) != (test.rows, test.cols) {
        return Err(DataError::InvalidDataset {
            name: paths[2].display().to_string(),
            reason: format!(
                "test images are {}x{} but training images are {}x{}",
                test.rows, test.cols, train.rows, train.cols
            ),
        });
    }
    Ok(Dataset {
        name: spec.name.clone(),
        dir: dir.to_path_buf(),
        class_names: spec.class_names.clone(),
        train,
        test,
    })
}

fn decode_split(spec: &DatasetSpec, images_path: &Path, labels_path: &Path) -> Result<Split> {
    let invalid = |path: &Path, reason: String| DataError::InvalidDataset {
        name: path.display().to_string(),
        reason,
    };
    let (image_dims, pixels) = read_idx(images_path)?.into_parts();
    let &[count, rows, cols] = image_dims.as_slice() else {
        return Err(invalid(
            images_path,
            format!("image file has dims {image_dims:?}; expected [count, rows, cols]"),
        ));
    };
    let (label_dims, labels) = read_idx(labels_path)?.into_parts();
    if label_dims.len() != 1 {
        return Err(invalid(
            labels_path,
            format!("label file has dims {label_dims:?}; expected [count]"),
        ));
    }
    if labels.len() != count {
        return Err(invalid(
            labels_path,
            format!(
                "{} labels for {count} images in {}",
                labels.len(),
                images_path.display()
            ),
        ));
    }
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| usize::from(l) >= spec.class_names.len())
    {
        return Err(invalid(
            labels_path,
            format!(
                "label {label} at index {index} is not below the class count {}",
                spec.class_names.len()
            ),
        ));
    }
    let images: Arc<[f32]> = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    Ok(Split {
        images,
        labels: labels.into(),
        rows,
        cols,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_order_and_dedup() {
        let spec = DatasetSpec::fashion_mnist();
        // A named directory is the only one: explicit first, then the environment's.
        let dirs =
            spec.candidate_dirs_from(Some(Path::new("/x")), true, Some(OsString::from("/env")));
        assert_eq!(dirs, [PathBuf::from("/x")]);
        let dirs = spec.candidate_dirs_from(None, true, Some(OsString::from("/env")));
        assert_eq!(dirs, [PathBuf::from("/env")]);
        let dirs = spec.candidate_dirs_from(None, true, Some(OsString::new()));
        assert_eq!(
            dirs,
            [
                PathBuf::from("data/fashion-mnist"),
                PathBuf::from("/usr/share/datasets/fashion-mnist")
            ]
        );
        let dirs = spec.candidate_dirs_from(Some(Path::new("data/fashion-mnist")), true, None);
        assert_eq!(dirs.len(), 1);
        assert_eq!(
            spec.candidate_dirs_from(Some(Path::new("/x")), false, None),
            [PathBuf::from("/x")]
        );
        assert!(spec.candidate_dirs_from(None, false, None).is_empty());
    }

    #[test]
    fn explicit_base_url_wins() {
        let spec = DatasetSpec::mnist();
        assert_eq!(
            spec.base_url(Some("http://127.0.0.1:1/")),
            "http://127.0.0.1:1/"
        );
    }

    #[test]
    fn mnist_uses_the_official_files_and_its_own_places() {
        // The names and MD5 sums of the original gzip files, as torchvision's MNIST lists them.
        let spec = DatasetSpec::mnist();
        let files: Vec<(&str, &str)> = spec
            .files()
            .iter()
            .map(|f| (f.name.as_str(), f.md5.as_str()))
            .collect();
        assert_eq!(
            files,
            [
                (
                    "train-images-idx3-ubyte.gz",
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873"
                ),
                (
                    "train-labels-idx1-ubyte.gz",
                    "d53e105ee54ea40749a09fcbcd1e9432"
                ),
                (
                    "t10k-images-idx3-ubyte.gz",
                    "9fb629c4189551a2d022fa330f9573f3"
                ),
                (
                    "t10k-labels-idx1-ubyte.gz",
                    "ec29112dd5afa0611ce80d1b7f02629c"
                ),
            ]
        );
        assert_eq!(spec.class_names, MNIST_CLASSES);
        // Fashion-MNIST's search order, with MNIST's directory names and variable (sharing
        // $TINYCNN_DATA would read Fashion-MNIST's files, which have the same names).
        assert_eq!(spec.dir_env.as_deref(), Some("TINYCNN_MNIST_DATA"));
        assert_eq!(
            spec.candidate_dirs_from(None, true, None),
            [
                PathBuf::from("data/mnist"),
                PathBuf::from("/usr/share/datasets/mnist")
            ]
        );
        let env = Some(OsString::from("/env"));
        assert_eq!(
            spec.candidate_dirs_from(None, true, env.clone()),
            [PathBuf::from("/env")]
        );
        assert_eq!(
            spec.candidate_dirs_from(Some(Path::new("/x")), true, env),
            [PathBuf::from("/x")]
        );
    }

    #[test]
    fn class_names_match_d2l() {
        assert_eq!(FASHION_MNIST_CLASSES[0], "t-shirt");
        assert_eq!(FASHION_MNIST_CLASSES[9], "ankle boot");
        assert_eq!(DatasetSpec::fashion_mnist().class_names.len(), 10);
    }
}
