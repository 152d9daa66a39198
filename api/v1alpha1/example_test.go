package v1alpha1_test

import (
	"fmt"
	"time"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/api/window"
)

func ExampleDecode() {
	spec := `apiVersion: kiln.dev/v1alpha1
kind: Cluster
metadata:
  name: demo
spec:
  provider:
    name: qemu
  contrlPlane:
    count: 3
    image: kiln-debian-12.qcow2
  nodePools:
    - name: workers
      count: three
      image: kiln-debian-12.qcow2
  ssh:
    generate: true
`
	_, err := v1alpha1.Decode([]byte(spec), "cluster.yaml")
	fmt.Println(err)
	// Output:
	// cluster.yaml:8:3: spec.contrlPlane: unknown field "contrlPlane", did you mean "controlPlane"?
	// cluster.yaml:13:14: spec.nodePools[0].count: expected an integer, got string "three"
}

func ExampleStarter() {
	c, err := v1alpha1.Decode(mustMarshal(v1alpha1.Starter("demo")), "cluster.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Spec.Provider.Name, c.Spec.ControlPlane.Count, c.Spec.NodePools[0].Name, c.Spec.NodePools[0].Count)
	// Output:
	// qemu 1 workers 2
}

func mustMarshal(c *v1alpha1.Cluster) []byte {
	b, err := v1alpha1.Marshal(c)
	if err != nil {
		panic(err)
	}
	return b
}

func ExampleHealth_MaxUnhealthyCount() {
	h := v1alpha1.Health{MaxUnhealthy: "40%"}
	fmt.Println(h.MaxUnhealthyCount(10), h.MaxUnhealthyCount(3))
	// Output:
	// 4 1
}

func ExampleNodePool_Window() {
	spec := `apiVersion: kiln.dev/v1alpha1
kind: Cluster
metadata:
  name: demo
spec:
  provider:
    name: qemu
  controlPlane:
    image: kiln-debian-12.qcow2
  nodePools:
    - name: workers
      count: 3
      image: kiln-debian-12.qcow2
      maxConcurrentReboots: 2
      maintenanceWindow:
        schedule: mon-fri 02:00-05:00
        timeZone: Europe/Berlin
  ssh:
    generate: true
`
	c, err := v1alpha1.Decode([]byte(spec), "cluster.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	pool, _ := c.Spec.NodePools[0].Window()
	controlPlane, _ := c.Spec.ControlPlane.Window()
	fmt.Printf("%s in %s, %d minutes, %d at once\n", pool, pool.TimeZone(), pool.Minutes(), c.Spec.NodePools[0].MaxConcurrentReboots)
	fmt.Println(controlPlane == window.Window{}, controlPlane.Open(time.Now()))
	// Output:
	// Mon-Fri 02:00-05:00 in Europe/Berlin, 180 minutes, 2 at once
	// true true
}
