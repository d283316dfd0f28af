package journal

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/rotplan/rotplan/internal/testchild"
)

// TestReadBoundsADamagedRecord gives Read a journal with a line of 3 GiB
// (a sparse file: damage, or a journal overwritten by something else), in
// the middle and at the end. The line must be refused as corrupt, or
// dropped as a torn tail, as a short damaged record is, without being held
// in memory: a child process under a 2 GiB limit reads it, since before
// the bound Read held the whole line.
func TestReadBoundsADamagedRecord(t *testing.T) {
	const huge = 3 << 30
	for _, where := range []string{"middle", "end"} {
		t.Run(where, func(t *testing.T) {
			_, path := appendAll(t, everyRecord()[:3])
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			start := fi.Size()
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(start + huge); err != nil {
				t.Fatal(err)
			}
			if where == "middle" {
				if _, err := f.WriteAt([]byte("\n00000000 {}\n"), start+huge); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			out, ok := testchild.Run(t, 2<<30, func() {
				c, err := Read(path)
				var corrupt *CorruptError
				switch {
				case errors.As(err, &corrupt):
					fmt.Printf("corrupt at %d: %s\n", corrupt.Offset, corrupt.Reason)
				case err != nil:
					fmt.Printf("error: %v\n", err)
				case c.Torn != nil:
					fmt.Printf("%d records, torn at %d, %d bytes: %s\n", len(c.Records), c.Torn.Offset, c.Torn.Length, c.Torn.Reason)
				default:
					fmt.Printf("%d records\n", len(c.Records))
				}
			})
			if !ok {
				t.Fatalf("the child did not finish:\n%s", testchild.Excerpt(out))
			}
			want := fmt.Sprintf("corrupt at %d: a record longer than 64 MiB", start)
			if where == "end" {
				want = fmt.Sprintf("3 records, torn at %d, %d bytes: no end of line", start, huge)
			}
			if !strings.Contains(out, want) {
				t.Fatalf("want %q, got:\n%s", want, testchild.Excerpt(out))
			}
		})
	}
}
