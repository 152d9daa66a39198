package awstest

import "sort"

// tags are a resource's tags.
type tags map[string]string

// tagsFrom reads TagSpecification.N for the resource type, EC2's way of tagging on create.
func tagsFrom(p params, resourceType string) (tags, error) {
	t := tags{}
	for _, spec := range p.items("TagSpecification") {
		if rt := spec.get("ResourceType"); rt != resourceType {
			return nil, badRequest("InvalidParameterValue", "TagSpecification resource type %q is not %q", rt, resourceType)
		}
		for _, tag := range spec.items("Tag") {
			t[tag.get("Key")] = tag.get("Value")
		}
	}
	return t, nil
}

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func (t tags) xml() []xmlTag {
	var out []xmlTag
	for k, v := range t {
		out = append(out, xmlTag{Key: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func (t tags) clone() tags {
	out := tags{}
	for k, v := range t {
		out[k] = v
	}
	return out
}
