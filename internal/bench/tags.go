package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// tagRepos spreads the tags of the start-time measurement over this many
// repositories.
const tagRepos = 10

// seedTags stores n tags, each a tiny distinct manifest whose only blob
// is one shared config, with PUTs from workers clients at once.
func seedTags(ctx context.Context, t *Target, n, workers int) error {
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	cd := descriptor{MediaType: mediaConfig, Digest: digestOf(cfg), Size: int64(len(cfg))}
	repos := min(tagRepos, n)
	for r := range repos {
		if err := t.pushMonolithic(ctx, tagRepo(r), cd.Digest, bytesPayload(cfg)); err != nil {
			return err
		}
	}
	errs := make([]error, n)
	forEach(n, workers, func(i int) {
		if ctx.Err() != nil {
			errs[i] = ctx.Err()
			return
		}
		body, err := json.Marshal(map[string]any{
			"schemaVersion": 2, "mediaType": mediaManifest, "config": cd, "layers": []descriptor{},
			"annotations": map[string]string{"org.example.bench.tag": fmt.Sprint(i)},
		})
		if err != nil {
			errs[i] = err
			return
		}
		errs[i] = t.putManifest(ctx, tagRepo(i%repos), fmt.Sprintf("t%05d", i), mediaManifest, body)
	})
	return errors.Join(errs...)
}

func tagRepo(i int) string { return fmt.Sprintf("bench/tags-%02d", i) }

// startWithTags measures start-to-ready with c.o.Tags tags in the store:
// a fresh Outpost (and a fresh distribution, for comparison) is seeded,
// stopped with SIGTERM, then restarted c.o.Restarts times; the median is
// printed.
func (c *comparison) startWithTags(ctx context.Context) error {
	for _, reg := range []struct {
		name     string
		cmd      func(data string) command
		password string
	}{
		{TargetOutpost, c.outpostCmd, c.o.Password},
		{TargetDistribution, c.distributionCmd, ""},
	} {
		if reg.name == TargetDistribution && c.o.DistributionBin == "" {
			continue
		}
		data := filepath.Join(c.root, reg.name+"-tags")
		s, _, err := c.launch(ctx, reg.name, reg.cmd(data), reg.password)
		if err != nil {
			return err
		}
		start := time.Now()
		if err := seedTags(ctx, s.target, c.o.Tags, 8); err != nil {
			return fmt.Errorf("seed %d tags into %s: %w", c.o.Tags, reg.name, err)
		}
		c.logf("seeded %d tags into %s in %s", c.o.Tags, reg.name, time.Since(start).Round(time.Millisecond))
		if err := c.stopAll(); err != nil {
			return err
		}
		var listen, ready []time.Duration
		var rss float64
		for range c.o.Restarts {
			s, r, err := c.launch(ctx, reg.name, reg.cmd(data), reg.password)
			if err != nil {
				return err
			}
			listen, ready = append(listen, r.listen), append(ready, r.ready)
			rss, _ = procStatusMB(s.target.PID, "VmRSS")
			if err := c.stopAll(); err != nil {
				return err
			}
		}
		c.em.result(Result{Workload: WorkloadStartTags, Target: reg.name,
			ListenMS: ms(median(listen)), ReadyMS: ms(median(ready)), RSSMB: rss,
			Note: fmt.Sprintf("%d tags; median of %d restarts; rss_mb right after ready", c.o.Tags, c.o.Restarts)})
	}
	return nil
}
