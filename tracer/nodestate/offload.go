package nodestate

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Offload is what a device does with checksums, and what kind of device it is. A device that
// leaves the checksum to hardware that never sees the packet (a veth into a VXLAN device
// whose UDP port a NIC mangles, say) is a classic cause of silent drops further on.
type Offload struct {
	TxChecksum, RxChecksum bool
	Kind                   string // netlink link kind: "veth", "vxlan", "bridge", "device" for a NIC
	VXLANPort              uint16 // the VXLAN device's UDP destination port; 0 for other kinds
}

// ChecksumOffload reads the checksum offload settings and kind of dev in the namespace with
// inode ino. It asks through the legacy ethtool ioctls, which every kernel answers from the
// device's feature flags whatever the driver.
func (r *Reader) ChecksumOffload(ino uint32, dev string) (Offload, error) {
	var o Offload
	err := r.withNetlink(ino, func(h *netlink.Handle) error {
		l, err := linkByName(h, dev)
		if err != nil {
			return err
		}
		o.Kind = l.Type()
		if v, ok := l.(*netlink.Vxlan); ok {
			o.VXLANPort = uint16(v.Port)
		}
		// The socket must be made here: SIOCETHTOOL finds the device by name in the
		// socket's namespace.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		defer unix.Close(fd)
		tx, err1 := ethtoolValue(fd, dev, unix.ETHTOOL_GTXCSUM, 0)
		rx, err2 := ethtoolValue(fd, dev, unix.ETHTOOL_GRXCSUM, 0)
		o.TxChecksum, o.RxChecksum = tx != 0, rx != 0
		return errors.Join(err1, err2)
	})
	if err != nil {
		return Offload{}, fmt.Errorf("read checksum offload of %s in netns %d: %w", dev, ino, err)
	}
	return o, nil
}

// VXLANDevices lists the VXLAN devices in the namespace with inode ino, by name, with their UDP
// destination port.
func (r *Reader) VXLANDevices(ino uint32) (map[string]uint16, error) {
	devs := map[string]uint16{}
	err := r.withNetlink(ino, func(h *netlink.Handle) error {
		links, err := dump(h.LinkList)
		if err != nil {
			return fmt.Errorf("list devices: %w", err)
		}
		for _, l := range links {
			if v, ok := l.(*netlink.Vxlan); ok {
				devs[v.Attrs().Name] = uint16(v.Port)
			}
		}
		return nil
	})
	return devs, err
}

// ethtoolValue issues an ethtool command that takes and returns a struct ethtool_value.
func ethtoolValue(fd int, dev string, cmd, data uint32) (uint32, error) {
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		return 0, fmt.Errorf("ethtool %#x on %s: %w", cmd, dev, err)
	}
	v := &ethtoolVal{cmd: cmd, data: data}
	req := ifreqData{data: unsafe.Pointer(v)}
	copy(req.name[:], ifr.Name())
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req)))
	runtime.KeepAlive(v)
	if errno != 0 {
		return 0, fmt.Errorf("ethtool %#x on %s: %w", cmd, dev, errno)
	}
	return v.data, nil
}

// ethtoolVal is struct ethtool_value.
type ethtoolVal struct {
	cmd, data uint32
}

// ifreqData is struct ifreq carrying a pointer, as x/sys/unix has it but does not export: the
// pointer must stay typed as one, not be written into a byte array.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [unsafe.Sizeof(unix.Ifreq{}) - unix.IFNAMSIZ - unsafe.Sizeof(uintptr(0))]byte
}
