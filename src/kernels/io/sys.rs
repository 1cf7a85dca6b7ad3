//! Operating-system facilities of the `io` kernel: preallocation, page-cache eviction,
//! residency, resource usage, and probes of the CPU, filesystem and block device.
//!
//! Everything here is a thin, documented wrapper over one system call, so the
//! workloads read as plain sequences of steps. On targets other than Linux the calls
//! that have no portable equivalent return [`std::io::ErrorKind::Unsupported`] and the
//! workloads record the fallback they took instead.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

/// A snapshot of the process's resource usage (`getrusage(RUSAGE_SELF)`), so a timed
/// region can report its page faults and CPU time as deltas.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub minor_faults: u64,
    pub major_faults: u64,
    pub user: Duration,
    pub system: Duration,
}

impl Usage {
    /// The usage of the whole process (every thread of the rayon pool counts).
    pub fn now() -> Usage {
        #[cfg(unix)]
        {
            // SAFETY: `getrusage` only writes the `rusage` struct we pass, which is plain data.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: a valid pointer to a properly sized struct.
            let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
            if status != 0 {
                return Usage::default();
            }
            let time = |value: libc::timeval| {
                Duration::from_secs(value.tv_sec.max(0) as u64) + Duration::from_micros(value.tv_usec.max(0) as u64)
            };
            Usage {
                minor_faults: usage.ru_minflt.max(0) as u64,
                major_faults: usage.ru_majflt.max(0) as u64,
                user: time(usage.ru_utime),
                system: time(usage.ru_stime),
            }
        }
        #[cfg(not(unix))]
        {
            Usage::default()
        }
    }

    /// The usage between `earlier` and `self`.
    pub fn since(self, earlier: Usage) -> Usage {
        Usage {
            minor_faults: self.minor_faults.saturating_sub(earlier.minor_faults),
            major_faults: self.major_faults.saturating_sub(earlier.major_faults),
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// Reserves `len` bytes of blocks for `file` (`fallocate(fd, 0, 0, len)`), which also
/// sets its size. Filesystems without the call (tmpfs before 3.5, some FUSE) report
/// `Unsupported` or `EOPNOTSUPP`; the caller falls back to `ftruncate`.
pub fn fallocate(file: &File, len: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let len = libc::off_t::try_from(len).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: a valid open file descriptor and plain integer arguments.
        let status = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
        if status == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, len);
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// Drops the clean page-cache pages of `file` (`posix_fadvise(POSIX_FADV_DONTNEED)`).
/// Dirty pages are not dropped, so the caller syncs first; no privileges are needed.
pub fn evict_from_page_cache(file: &File) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open file descriptor and plain integer arguments.
        let status = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        // posix_fadvise returns the error number instead of setting errno.
        if status == 0 { Ok(()) } else { Err(std::io::Error::from_raw_os_error(status)) }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// The fraction of `file`'s pages that are in the page cache, measured with `mincore`
/// on a temporary read-only mapping (mapping alone faults nothing in).
pub fn resident_fraction(file: &File, len: usize) -> std::io::Result<f64> {
    if len == 0 {
        return Ok(1.0);
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the mapping is read-only and only inspected with `mincore`; no byte of
        // it is read, so a concurrent truncation could not cause undefined behaviour.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
        Ok(resident_pages(&map)? as f64 / len.div_ceil(page_size()) as f64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// How many pages of `mapped` (which starts on a page boundary, as a mapping does) are
/// resident in memory, measured with `mincore` (which touches none of them).
#[cfg(target_os = "linux")]
pub fn resident_pages(mapped: &[u8]) -> std::io::Result<usize> {
    let mut vector = vec![0_u8; mapped.len().div_ceil(page_size())];
    // SAFETY: `mapped` is live for the call and `vector` holds one byte per page of it,
    // as `mincore` requires; `mincore` only writes `vector`.
    let status = unsafe { libc::mincore(mapped.as_ptr() as *mut libc::c_void, mapped.len(), vector.as_mut_ptr()) };
    if status != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(vector.iter().filter(|&&flags| flags & 1 == 1).count())
}

/// The size of a virtual-memory page.
pub fn page_size() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: `sysconf` with a valid name has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size).ok().filter(|&size| size > 0).unwrap_or(4096)
    }
    #[cfg(not(unix))]
    {
        4096
    }
}

/// The CPU features the kernel's paths depend on, detected at run time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    pub popcnt: bool,
    pub avx2: bool,
    pub bmi2: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512vpopcntdq: bool,
}

impl CpuFeatures {
    pub fn detect() -> CpuFeatures {
        #[cfg(target_arch = "x86_64")]
        {
            CpuFeatures {
                popcnt: std::arch::is_x86_feature_detected!("popcnt"),
                avx2: std::arch::is_x86_feature_detected!("avx2"),
                bmi2: std::arch::is_x86_feature_detected!("bmi2"),
                avx512f: std::arch::is_x86_feature_detected!("avx512f"),
                avx512bw: std::arch::is_x86_feature_detected!("avx512bw"),
                avx512vpopcntdq: std::arch::is_x86_feature_detected!("avx512vpopcntdq"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            CpuFeatures::default()
        }
    }
}

/// Where the scratch directory lives: filesystem type and the block device under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Storage {
    /// `ext4`, `xfs`, `tmpfs`, ... or `unknown (0x...)`.
    pub filesystem: String,
    /// The whole-disk device name (`nvme0n1`, `vda`, `sda`), empty when the filesystem
    /// has no block device (tmpfs, overlay) or it cannot be found.
    pub device: String,
    /// `/sys/block/<device>/queue/rotational`; `None` when unknown.
    pub rotational: Option<bool>,
}

impl Storage {
    pub fn is_nvme(&self) -> bool {
        self.device.starts_with("nvme")
    }

    pub fn is_tmpfs(&self) -> bool {
        self.filesystem == "tmpfs" || self.filesystem == "ramfs"
    }

    /// Probes the filesystem holding `path` (`statfs`) and its block device
    /// (`stat` -> `/sys/dev/block/MAJOR:MINOR`, climbing from a partition to its disk).
    pub fn probe(path: &Path) -> Storage {
        Storage { filesystem: filesystem_name(path), device: String::new(), rotational: None }.with_device(path)
    }

    #[cfg(target_os = "linux")]
    fn with_device(mut self, path: &Path) -> Storage {
        use std::os::unix::fs::MetadataExt;
        let Ok(metadata) = std::fs::metadata(path) else {
            return self;
        };
        let device_number = metadata.dev();
        let (major, minor) = (libc::major(device_number), libc::minor(device_number));
        let Ok(mut directory) = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")) else {
            return self;
        };
        if directory.join("partition").exists() {
            match directory.parent() {
                Some(parent) => directory = parent.to_path_buf(),
                None => return self,
            }
        }
        self.device = directory.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        self.rotational = std::fs::read_to_string(directory.join("queue/rotational"))
            .ok()
            .and_then(|text| text.trim().parse::<u8>().ok())
            .map(|flag| flag == 1);
        self
    }

    #[cfg(not(target_os = "linux"))]
    fn with_device(self, _path: &Path) -> Storage {
        self
    }
}

fn filesystem_name(path: &Path) -> String {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
            return "unknown".into();
        };
        // SAFETY: `statfs` only writes the plain-data struct we pass.
        let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a valid pointer to a properly sized struct.
        if unsafe { libc::statfs(c_path.as_ptr(), &mut stats) } != 0 {
            return "unknown".into();
        }
        // Magic numbers from statfs(2).
        #[allow(clippy::unnecessary_cast)]
        let magic = stats.f_type as u64 & 0xffff_ffff;
        let name = match magic {
            0xEF53 => "ext4",
            0x5846_5342 => "xfs",
            0x9123_683E => "btrfs",
            0x0102_1994 => "tmpfs",
            0x8584_58f6 => "ramfs",
            0x794C_7630 => "overlay",
            0x2FC1_2FC1 => "zfs",
            0xF2F5_2010 => "f2fs",
            0x6969 => "nfs",
            0x6573_5546 => "fuse",
            0x0000_4d44 => "vfat",
            _ => return format!("unknown (0x{magic:x})"),
        };
        name.into()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        "unknown".into()
    }
}
