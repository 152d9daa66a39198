package kubecfg

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMarshalSet(t *testing.T) {
	type inner struct {
		Enabled *bool           `json:"enabled,omitempty"`
		TTL     metav1.Duration `json:"ttl,omitempty"`
	}
	type config struct {
		Name    string          `json:"name"`
		Count   int32           `json:"count,omitempty"`
		Period  metav1.Duration `json:"period,omitempty"`
		Inner   inner           `json:"inner"`
		Unset   inner           `json:"unset"`
		List    []string        `json:"list,omitempty"`
		Empties []string        `json:"empties"`
	}
	tests := []struct {
		name string
		obj  config
		want string
	}{
		{
			name: "nothing set",
			want: "{}\n",
		},
		{
			name: "a pointer to false is set, zero durations and empty objects are not",
			obj:  config{Name: "a", Inner: inner{Enabled: new(false)}},
			want: "inner:\n  enabled: false\nname: a\n",
		},
		{
			name: "values and arrays",
			obj: config{
				Count:   5,
				Period:  metav1.Duration{Duration: time.Minute},
				Inner:   inner{TTL: metav1.Duration{Duration: time.Second}},
				List:    []string{"x"},
				Empties: []string{},
			},
			want: "count: 5\nempties: []\ninner:\n  ttl: 1s\nlist:\n- x\nperiod: 1m0s\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := marshalSet(tc.obj, config{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, string(got)); diff != "" {
				t.Errorf("marshalSet (-want +got):\n%s", diff)
			}
		})
	}
}
