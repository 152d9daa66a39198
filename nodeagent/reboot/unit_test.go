package reboot

import (
	"strings"
	"testing"
)

func TestUnits(t *testing.T) {
	base := UnitInput{Node: "@@NODE@@", Pool: "workers", Slots: 2, Kubeconfig: "/etc/kubernetes/kubelet.conf", LockCert: DefaultLockCert, LockKey: DefaultLockKey}
	service, timer, err := Units(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ExecStart=/usr/local/bin/kiln-node reboot --kubeconfig=/etc/kubernetes/kubelet.conf --lock-cert=/etc/kiln/reboot/agent.crt --lock-key=/etc/kiln/reboot/agent.key --node-name=@@NODE@@ --pool=workers --slots=2\n",
		"Type=oneshot\n", "ConditionPathExists=/etc/kubernetes/kubelet.conf\n",
	} {
		if !strings.Contains(service, want) {
			t.Errorf("service lacks %q:\n%s", want, service)
		}
	}
	if strings.Contains(service, "--window") {
		t.Errorf("no window given, but the service has one:\n%s", service)
	}
	for _, want := range []string{"OnBootSec=2min\n", "OnUnitInactiveSec=1min\n", "WantedBy=timers.target\n"} {
		if !strings.Contains(timer, want) {
			t.Errorf("timer lacks %q:\n%s", want, timer)
		}
	}

	windowed := base
	windowed.Schedule, windowed.TimeZone = "Mon-Fri 02:00-05:00", "Europe/Berlin"
	service, _, err = Units(windowed)
	if err != nil {
		t.Fatal(err)
	}
	// systemd splits ExecStart on spaces unless an argument is quoted.
	if !strings.Contains(service, ` "--window=Mon-Fri 02:00-05:00" --time-zone=Europe/Berlin`) {
		t.Errorf("the window is not one quoted argument:\n%s", service)
	}

	for _, tc := range []struct {
		name   string
		change func(*UnitInput)
		want   string
	}{
		{name: "no node", change: func(in *UnitInput) { in.Node = "" }, want: `node ""`},
		{name: "no lock key", change: func(in *UnitInput) { in.LockKey = "" }, want: `key ""`},
		{name: "no slots", change: func(in *UnitInput) { in.Slots = 0 }, want: "pool workers: 0 slots"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base
			tc.change(&in)
			if _, _, err := Units(in); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
