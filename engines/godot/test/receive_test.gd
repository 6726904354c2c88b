# Headless test of addons/distilface (tests/test_godot.py runs it): a mesh with blend shapes named
# "jawOpen", "MouthClose" (another case) and "notACurve", a DistilFaceReceiver on it, connected to
# a running `distilface stream --output ws`. When the stream ends it writes every frame received,
# the last one, and the mesh's blend shape values to `out` as JSON, and quits (1 on timeout).
# Arguments: url=ws://... out=PATH [timeout_s=60]
extends SceneTree

var receiver
var mesh_instance: MeshInstance
var received := []
var args := {}


func _init() -> void:
	for a in OS.get_cmdline_args():
		if "=" in a:
			var kv = a.split("=", true, 1)
			args[kv[0]] = kv[1]
	mesh_instance = MeshInstance.new()
	mesh_instance.mesh = _face_mesh(["jawOpen", "MouthClose", "notACurve"])
	root.add_child(mesh_instance)
	receiver = load("res://addons/distilface/distilface_receiver.gd").new()
	receiver.url = args.get("url", "ws://127.0.0.1:8765/frames")
	receiver.reconnect_s = 0.2
	receiver.connect("frame_received", self, "_on_frame")
	receiver.connect("stream_ended", self, "_on_end")
	root.add_child(receiver)
	receiver.set_mesh(mesh_instance)
	var timer = Timer.new()
	timer.one_shot = true
	timer.wait_time = float(args.get("timeout_s", "60"))
	timer.connect("timeout", self, "_on_timeout")
	root.add_child(timer)
	timer.start()


func _face_mesh(names: Array) -> ArrayMesh:
	# one triangle whose blend shapes move it; only the names and weights matter here
	var arrays = []
	arrays.resize(Mesh.ARRAY_MAX)
	arrays[Mesh.ARRAY_VERTEX] = PoolVector3Array([Vector3(0, 0, 0), Vector3(1, 0, 0), Vector3(0, 1, 0)])
	var shapes = []
	var mesh = ArrayMesh.new()
	for n in names:
		mesh.add_blend_shape(n)
		var s = []
		s.resize(Mesh.ARRAY_MAX)
		s[Mesh.ARRAY_VERTEX] = PoolVector3Array([Vector3(0, 0, 1), Vector3(1, 0, 1), Vector3(0, 1, 1)])
		shapes.append(s)
	mesh.add_surface_from_arrays(Mesh.PRIMITIVE_TRIANGLES, arrays, shapes)
	return mesh


func _on_frame(frame: Dictionary) -> void:
	received.append({"frame": frame["frame"], "jawOpen": frame["blendshapes"]["jawOpen"],
					 "mouthClose": frame["blendshapes"]["mouthClose"]})


func _on_end(_info: Dictionary) -> void:
	receiver.apply_pending()
	_write(0)


func _on_timeout() -> void:
	_write(1)


func _write(code: int) -> void:
	var mesh_values = {}
	for n in ["jawOpen", "MouthClose", "notACurve"]:
		mesh_values[n] = mesh_instance.get("blend_shapes/" + n)
	var f = File.new()
	f.open(args.get("out", "user://received.json"), File.WRITE)
	f.store_string(to_json({"received": received, "last": receiver.last_frame, "mesh": mesh_values,
							"timed_out": code != 0}))
	f.close()
	quit(code)
