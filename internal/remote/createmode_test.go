package remote

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// packet builds an SFTP packet: length, type, then the fields (uint32 or
// string).
func packet(typ byte, fields ...any) []byte {
	b := []byte{0, 0, 0, 0, typ}
	for _, f := range fields {
		switch f := f.(type) {
		case uint32:
			b = binary.BigEndian.AppendUint32(b, f)
		case string:
			b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
			b = append(b, f...)
		}
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// nopCloser is a bytes.Buffer that can be closed.
type nopCloser struct{ bytes.Buffer }

func (*nopCloser) Close() error { return nil }

// TestOwnerOnlyCreates: a create without attributes gains the owner-only
// mode, whatever the chunks the stream arrives in; every other packet
// passes unchanged.
func TestOwnerOnlyCreates(t *testing.T) {
	const read, write, creat, excl = 0x01, 0x02, 0x08, 0x20
	for _, c := range []struct {
		name    string
		in, out []byte
	}{
		{"exclusive create", packet(fxpOpen, uint32(7), "/etc/k", uint32(write|creat|excl), uint32(0)),
			packet(fxpOpen, uint32(7), "/etc/k", uint32(write|creat|excl), uint32(attrPerms), uint32(0o600))},
		{"open without create", packet(fxpOpen, uint32(8), "/etc/k", uint32(read), uint32(0)),
			packet(fxpOpen, uint32(8), "/etc/k", uint32(read), uint32(0))},
		{"create with a mode already", packet(fxpOpen, uint32(9), "/k", uint32(write|creat), uint32(attrPerms), uint32(0o640)),
			packet(fxpOpen, uint32(9), "/k", uint32(write|creat), uint32(attrPerms), uint32(0o640))},
		{"mkdir", packet(fxpMkdir, uint32(10), "/var/backups/rotplan", uint32(0)),
			packet(fxpMkdir, uint32(10), "/var/backups/rotplan", uint32(attrPerms), uint32(0o700))},
		{"a write (offset as two uint32)", packet(6, uint32(11), "handle", uint32(0), uint32(0), string(bytes.Repeat([]byte("k"), 40000))),
			packet(6, uint32(11), "handle", uint32(0), uint32(0), string(bytes.Repeat([]byte("k"), 40000)))},
	} {
		for _, chunk := range []int{1, 3, 7, 1 << 20} {
			// Each case follows and precedes another packet, so that
			// the boundaries between packets are crossed too.
			stat := packet(7, uint32(1), "/x")
			in := append(append(append([]byte{}, stat...), c.in...), stat...)
			want := append(append(append([]byte{}, stat...), c.out...), stat...)
			var got nopCloser
			w := &ownerOnlyCreates{w: &got}
			for rest := in; len(rest) > 0; {
				k := min(chunk, len(rest))
				if n, err := w.Write(rest[:k]); n != k || err != nil {
					t.Fatalf("%s: Write returned %d, %v", c.name, n, err)
				}
				rest = rest[k:]
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("%s, in chunks of %d: sent\n%x\nwant\n%x", c.name, chunk, got.Bytes(), want)
			}
		}
	}
}

// TestHostSubject: a message names a plan's host by its name and address,
// and a bare address as a host, never "host host.web[...]".
func TestHostSubject(t *testing.T) {
	for _, tc := range []struct {
		h    Host
		want string
	}{
		{Host{Name: `host.web["a"]`, Address: "10.0.0.1", Port: 22}, `host.web["a"] (10.0.0.1:22)`},
		{Host{Address: "10.0.0.1", Port: 2222}, "host 10.0.0.1:2222"},
		{Host{Name: "10.0.0.1", Address: "10.0.0.1", Port: 22}, "host 10.0.0.1:22"},
	} {
		if got := tc.h.Subject(); got != tc.want {
			t.Errorf("%#v: %q, want %q", tc.h, got, tc.want)
		}
	}
}
