// Command luahealth evaluates an Argo CD resource health script (health.lua) with gopher-lua,
// the interpreter Argo CD embeds, the way Argo CD calls it: the object is the global `obj`, and
// the script returns a table with `status` and `message`.
//
// Usage: luahealth path/to/health.lua < objects.json
// Input: a JSON array of objects (or one object). Output: a JSON array of {"status", "message"}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	lua "github.com/yuin/gopher-lua"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: luahealth health.lua < objects.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var objects []interface{}
	if err := json.Unmarshal(data, &objects); err != nil {
		var one map[string]interface{}
		if err2 := json.Unmarshal(data, &one); err2 != nil {
			fail(fmt.Errorf("stdin is neither a JSON object nor an array: %w", err))
		}
		objects = []interface{}{one}
	}
	verdicts := make([]verdict, 0, len(objects))
	for i, obj := range objects {
		v, err := evaluate(string(script), obj)
		if err != nil {
			fail(fmt.Errorf("object %d: %w", i, err))
		}
		verdicts = append(verdicts, v)
	}
	if err := json.NewEncoder(os.Stdout).Encode(verdicts); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "luahealth:", err)
	os.Exit(1)
}

// evaluate runs the script in a fresh state with only the safe standard libraries (Argo CD does
// not give health scripts io or os either).
func evaluate(script string, obj interface{}) (verdict, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
	} {
		if err := L.CallByParam(lua.P{Fn: L.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return verdict{}, err
		}
	}
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return verdict{}, err
	}
	table, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return verdict{}, fmt.Errorf("script returned %s, not a table", L.Get(-1).Type())
	}
	return verdict{
		Status:  lua.LVAsString(table.RawGetString("status")),
		Message: lua.LVAsString(table.RawGetString("message")),
	}, nil
}

func toLua(L *lua.LState, v interface{}) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []interface{}:
		t := L.NewTable()
		for _, item := range v {
			t.Append(toLua(L, item))
		}
		return t
	case map[string]interface{}:
		t := L.NewTable()
		for key, item := range v {
			t.RawSetString(key, toLua(L, item))
		}
		return t
	default:
		return lua.LString(fmt.Sprint(v))
	}
}
