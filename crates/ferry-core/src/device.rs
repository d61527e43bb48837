//! Where memory lives: DLPack device descriptors and the host-readable memory kinds a
//! [`HostArray`](crate::HostArray) may point into.

use std::fmt;

/// A DLPack device: type and ordinal kept as raw integers, so unknown device types are
/// representable and reported, never undefined behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Device {
    /// DLPack `DLDeviceType` value (`kDLCPU` = 1, `kDLCUDA` = 2, ...).
    pub device_type: i32,
    /// Device ordinal; 0 for CPU, pinned and managed memory.
    pub device_id: i32,
}

impl Device {
    /// `kDLCPU`
    pub const CPU_TYPE: i32 = 1;
    /// `kDLCUDA`
    pub const CUDA_TYPE: i32 = 2;
    /// `kDLCUDAHost` (pinned host memory)
    pub const CUDA_HOST_TYPE: i32 = 3;
    /// `kDLROCM`
    pub const ROCM_TYPE: i32 = 10;
    /// `kDLROCMHost` (pinned host memory)
    pub const ROCM_HOST_TYPE: i32 = 11;
    /// `kDLCUDAManaged` (unified memory)
    pub const CUDA_MANAGED_TYPE: i32 = 13;

    /// The host CPU.
    pub const CPU: Device = Device {
        device_type: Self::CPU_TYPE,
        device_id: 0,
    };

    /// CUDA device `ordinal`.
    pub fn cuda(ordinal: i32) -> Device {
        Device {
            device_type: Self::CUDA_TYPE,
            device_id: ordinal,
        }
    }

    /// The host memory kind of this device, or `None` when its memory cannot be read by the CPU.
    pub fn memory_kind(self) -> Option<MemoryKind> {
        match self.device_type {
            Self::CPU_TYPE => Some(MemoryKind::Cpu),
            Self::CUDA_HOST_TYPE => Some(MemoryKind::CudaHost),
            Self::ROCM_HOST_TYPE => Some(MemoryKind::RocmHost),
            Self::CUDA_MANAGED_TYPE => Some(MemoryKind::CudaManaged),
            _ => None,
        }
    }

    /// Whether the CPU can read this device's memory directly.
    pub fn is_host_readable(self) -> bool {
        self.memory_kind().is_some()
    }

    /// Whether this is a CUDA device (not pinned or managed host memory).
    pub fn is_cuda(self) -> bool {
        self.device_type == Self::CUDA_TYPE
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.device_type {
            1 => "cpu",
            2 => "cuda",
            3 => "cuda-pinned",
            4 => "opencl",
            7 => "vulkan",
            8 => "metal",
            9 => "vpi",
            10 => "rocm",
            11 => "rocm-pinned",
            12 => "ext-dev",
            13 => "cuda-managed",
            14 => "oneapi",
            15 => "webgpu",
            16 => "hexagon",
            17 => "maia",
            other => return write!(f, "device type {other}:{}", self.device_id),
        };
        write!(f, "{name}:{}", self.device_id)
    }
}

/// Host-readable memory a [`HostArray`](crate::HostArray) can point into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum MemoryKind {
    /// Ordinary pageable host memory.
    #[default]
    Cpu,
    /// CUDA pinned host memory (`cudaMallocHost`).
    CudaHost,
    /// ROCm pinned host memory (`hipMallocHost`).
    RocmHost,
    /// CUDA managed (unified) memory, readable from the host.
    CudaManaged,
}

impl MemoryKind {
    /// The DLPack device this memory is exported as.
    pub fn device(self) -> Device {
        let device_type = match self {
            MemoryKind::Cpu => Device::CPU_TYPE,
            MemoryKind::CudaHost => Device::CUDA_HOST_TYPE,
            MemoryKind::RocmHost => Device::ROCM_HOST_TYPE,
            MemoryKind::CudaManaged => Device::CUDA_MANAGED_TYPE,
        };
        Device {
            device_type,
            device_id: 0,
        }
    }
}

impl fmt::Display for MemoryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.device(), f)
    }
}
