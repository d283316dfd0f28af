package journal

import (
	"testing"
	"time"
)

// BenchmarkAppend measures a durable append, one writer at a time and with
// many concurrent writers; fsyncs/op shows how many appends share an fsync.
func BenchmarkAppend(b *testing.B) {
	rec := Record{Type: StepSucceeded, Step: "write.server_key", Time: time.Now().UTC(),
		Outputs: []byte(`{"mode":"0600","path":"/home/vaultprod/tls-prod/server.key","sha256":"bbfe9a98ef61f77b9cc0936c696dc35b9952019838bd59956da61fad4113a3f0","size":227}`)}
	for _, tc := range []struct {
		name    string
		writers int
	}{{"serial", 1}, {"concurrent-10", 10}} {
		b.Run(tc.name, func(b *testing.B) {
			j, err := Create(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			b.SetParallelism(tc.writers)
			b.ResetTimer()
			if tc.writers == 1 {
				for i := 0; i < b.N; i++ {
					if err := j.Append(rec); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := j.Append(rec); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.ReportMetric(float64(j.Stats().Syncs)/float64(b.N), "fsyncs/op")
		})
	}
}
