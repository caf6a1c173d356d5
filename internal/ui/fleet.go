package ui

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/outpost-registry/outpost/internal/controlplane"
	"github.com/outpost-registry/outpost/internal/protocol"
)

// siteRow is one connected registry in the fleet tree.
type siteRow struct {
	*protocol.ConnectedRegistry
	Depth int
	// Match is false for an ancestor shown only to place a match in the
	// tree.
	Match   bool
	Offline bool
	Failing bool
	Behind  bool
	// LowDisk: the site's data volume is full (nothing left to evict) or
	// at least lowDiskPercent used.
	LowDisk bool
	// Lag is how long the site has gone without the sync its schedule
	// expected (zero when not behind).
	Lag      time.Duration
	Children int
}

// Health is the one-word summary the tree shows and filters by.
func (r siteRow) Health() string {
	switch {
	case r.ActivationStatus != protocol.ActivationActive:
		return "inactive"
	case r.Offline:
		return "offline"
	case r.Failing:
		return "failing"
	case r.Behind:
		return "behind"
	}
	return "ok"
}

// lowDiskPercent is the use of a data volume the disk filter reports.
const lowDiskPercent = 90

// DiskPercent is the used share of the site's data volume (0 when it
// reports none).
func (r siteRow) DiskPercent() int {
	if r.Volume == nil || r.Volume.TotalBytes == 0 {
		return 0
	}
	return int(r.Volume.UsedBytes * 100 / r.Volume.TotalBytes)
}

// Disk is "used of total" in IEC units, or "" when not reported.
func (r siteRow) Disk() string {
	if r.Volume == nil || r.Volume.TotalBytes == 0 {
		return ""
	}
	return iec(int64(min(r.Volume.UsedBytes, 1<<62))) + " of " + iec(int64(min(r.Volume.TotalBytes, 1<<62)))
}

type fleetData struct {
	Rows          []siteRow
	Filter, Query string
	// All shows the whole tree; otherwise its first pageRows rows, and
	// Hidden tells how many more there are.
	All                             bool
	Hidden                          int
	Total, Offline, Failing, Behind int
	Inactive, Shown, LowDisk        int
	Version, LoginServer            string
}

// pageRows is how many rows of the tree the page shows unless asked for
// all: a thousand rows take a browser about a second to lay out, and the
// counts and filters find any site beyond them.
const pageRows = 50

// Filters of the fleet page.
var fleetFilters = []string{"", "offline", "failing", "behind", "disk"}

func (u *UI) fleet(w http.ResponseWriter, r *http.Request, s *session) {
	d, err := u.fleetData(r)
	if err != nil {
		u.internal(w, r, s, err)
		return
	}
	u.render(w, r, s, http.StatusOK, "fleet", d)
}

// fleetRows answers the page's polling (and its search) with the tree
// alone.
func (u *UI) fleetRows(w http.ResponseWriter, r *http.Request, s *session) {
	d, err := u.fleetData(r)
	if err != nil {
		u.internal(w, r, s, err)
		return
	}
	u.renderPart(w, s, "fleet", "tree", d)
}

func (u *UI) fleetData(r *http.Request) (*fleetData, error) {
	list, err := u.o.Fleet.List("")
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	d := &fleetData{Filter: q.Get("filter"), Query: strings.TrimSpace(q.Get("q")), All: q.Get("all") == "1", Version: u.o.Version, LoginServer: u.loginServer(r)}
	if !slices.Contains(fleetFilters, d.Filter) {
		d.Filter = ""
	}
	now := u.o.Now()
	rows := make(map[string]*siteRow, len(list))
	for _, c := range list {
		row := classify(controlplane.View(c), now)
		rows[c.Name] = &row
		d.Total++
		switch row.Health() {
		case "inactive":
			d.Inactive++
		case "offline":
			d.Offline++
		case "failing":
			d.Failing++
		case "behind":
			d.Behind++
		}
		if row.LowDisk {
			d.LowDisk++
		}
	}
	// A site matches when it passes the filter and the search; its
	// ancestors are shown with it, dimmed, so it stays in its place.
	keep := map[string]bool{}
	for name, row := range rows {
		if !d.matches(row) {
			continue
		}
		row.Match = true
		for n, hops := name, 0; n != "" && !keep[n] && hops < 64; hops++ {
			keep[n] = true
			if p := rows[n]; p != nil {
				n = p.Parent
			} else {
				break
			}
		}
	}
	children := map[string][]string{}
	for name, row := range rows {
		parent := row.Parent
		if rows[parent] == nil {
			parent = ""
		}
		children[parent] = append(children[parent], name)
		if parent != "" {
			rows[parent].Children++
		}
	}
	var walk func(parent string, depth int)
	walk = func(parent string, depth int) {
		names := children[parent]
		slices.Sort(names)
		for _, n := range names {
			if !keep[n] || depth > 32 {
				continue
			}
			row := rows[n]
			row.Depth = depth
			d.Rows = append(d.Rows, *row)
			if row.Match {
				d.Shown++
			}
			walk(n, depth+1)
		}
	}
	walk("", 1)
	if !d.All && len(d.Rows) > pageRows {
		d.Hidden = len(d.Rows) - pageRows
		d.Rows = d.Rows[:pageRows]
	}
	return d, nil
}

func (d *fleetData) matches(r *siteRow) bool {
	switch d.Filter {
	case "":
	case "disk":
		if !r.LowDisk {
			return false
		}
	default:
		if r.Health() != d.Filter {
			return false
		}
	}
	if d.Query == "" {
		return true
	}
	q := strings.ToLower(d.Query)
	for _, f := range []string{r.Name, r.LoginServer, r.Version, string(r.Mode), string(r.ConnectionState)} {
		if strings.Contains(strings.ToLower(f), q) {
			return true
		}
	}
	return slices.ContainsFunc(r.Repositories, func(s string) bool { return strings.Contains(strings.ToLower(s), q) })
}

// classify derives a site's health: offline (it missed two heartbeats,
// or never connected), failing (its last run failed, or it reports
// itself unhealthy), behind (its last sync is older than two runs of its
// schedule, or an active site never synced).
func classify(c *protocol.ConnectedRegistry, now time.Time) siteRow {
	row := siteRow{ConnectedRegistry: c}
	row.LowDisk = c.Volume != nil && (c.Volume.Full || row.DiskPercent() >= lowDiskPercent)
	row.Offline = c.ConnectionState == protocol.StateOffline
	row.Failing = c.ConnectionState == protocol.StateUnhealthy ||
		(c.LastSyncResult != nil && (c.LastSyncResult.State == protocol.SyncFailed || c.LastSyncResult.Error != ""))
	if c.LastSync != nil {
		if sch, err := protocol.ParseSchedule(c.SyncSchedule); err == nil {
			due := sch.Next(*c.LastSync)
			row.Behind = now.After(sch.Next(due).Add(time.Minute))
			if row.Behind {
				row.Lag = now.Sub(due)
			}
		}
	} else {
		row.Behind = c.ActivationStatus == protocol.ActivationActive
	}
	return row
}

// loginServer is the host:port clients pull from.
func (u *UI) loginServer(r *http.Request) string {
	if u.o.LoginServer != "" {
		return u.o.LoginServer
	}
	return r.Host
}

func (u *UI) internal(w http.ResponseWriter, r *http.Request, s *session, err error) {
	u.o.Logger.Error("dashboard request failed", "path", r.URL.Path, "err", err)
	u.fail(w, r, s, http.StatusInternalServerError, "Internal error: the server log has the details.")
}
