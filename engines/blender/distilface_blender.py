# DistilFace animation into Blender: a `distilface animate AUDIO -o face.glb` file opens as the
# face with its 52 ARKit shape keys, the animation on whole frames of a scene at the animation's
# frame rate, and the speech in the sequencer at frame 0, so playback is lip-synced.
#
# Blender's own glTF importer reads the file too (File > Import > glTF 2.0), but converts the
# keyframe times with whatever frame rate the scene has (24 fps by default: 30 fps keys land on
# fractional frames), starts the keys at frame 0 while the scene starts at 1, and leaves the sound
# out (glTF cannot carry audio). This does those three things around the same importer.
#
# As an add-on: Edit > Preferences > Add-ons > Install from Disk (Install... before Blender 4.2)
# this file, tick it; then File > Import > "DistilFace animation (.glb)". As a script (no add-on
# installed):
#
#     blender --python engines/blender/distilface_blender.py -- face.glb [--audio speech.wav]
#             [--save face.blend]
#
# `-b` before `--python` runs it without a window (with --save). Tested in Blender 3.4 and 5.0;
# the glTF importer needs numpy in Blender's Python (blender.org builds bundle it; docs/engines.md).
#
# Live: `distilface stream --output livelink` (or Live Link Face on a phone) sends Live Link Face
# UDP packets; the add-on's View3D > Sidebar > DistilFace panel, or
#
#     blender face.blend --python engines/blender/distilface_blender.py -- --live 11111 [--record]
#
# puts each packet's 52 ARKit values on the active mesh's shape keys (matched by name, case
# folded), and with --record keys them into the timeline. docs/engines.md.

bl_info = {
    "name": "DistilFace animation (.glb)",
    "author": "DistilFace",
    "version": (1, 0, 0),
    "blender": (3, 3, 0),
    "location": "File > Import > DistilFace animation (.glb)",
    "description": "A distilface animate .glb: the face, its ARKit shape keys, the animation "
                   "at its own frame rate and the speech in the sequencer",
    "category": "Import-Export",
}

import json
import math
import os
import struct
import sys

GLB_MAGIC = 0x46546C67  # "glTF"
CHUNK_JSON = 0x4E4F534A  # "JSON"


def read_glb_json(path):
    """The JSON chunk of a .glb as a dict; ValueError naming the file when it is not a GLB."""
    with open(path, "rb") as f:
        header = f.read(20)
        if len(header) < 20:
            raise ValueError(f"{path}: not a glTF binary file (only {len(header)} bytes)")
        magic, version, _length, chunk_len, chunk_type = struct.unpack("<5I", header)
        if magic != GLB_MAGIC or chunk_type != CHUNK_JSON:
            raise ValueError(f"{path}: not a glTF binary file (.glb)")
        if version != 2:
            raise ValueError(f"{path}: glTF version {version}, this reads version 2")
        return json.loads(f.read(chunk_len).decode("utf-8"))


def animation_info(doc, glb_path):
    """(fps, keyframe count, sound file or None) of the file's first animation: `fps` and
    `soundFile` are in its extras when distilface wrote it (distilface.rig.gltf)."""
    anims = doc.get("animations") or []
    if not anims:
        raise ValueError(f"{glb_path}: no animation in the file (the face alone: write it with "
                         f"`distilface animate AUDIO -o {os.path.basename(glb_path)}`)")
    extras = anims[0].get("extras") or {}
    sampler = anims[0]["samplers"][0]
    keys = doc["accessors"][sampler["input"]]["count"]
    fps = float(extras.get("fps") or 0)
    if fps <= 0:
        # Not written by distilface: the frame rate from the first two key times is not readable
        # here without the binary chunk, so take the key count over the duration.
        times = doc["accessors"][sampler["input"]]
        duration = float(times["max"][0]) - float(times["min"][0])
        fps = (keys - 1) / duration if keys > 1 and duration > 0 else 30.0
    return fps, keys, extras.get("soundFile")


def find_sound(sound, glb_path):
    """The sound file named in the .glb, looked for as written (absolute, or relative to the
    directory `distilface animate` ran in), then beside the .glb. None when it is nowhere."""
    if not sound:
        return None
    here = os.path.dirname(os.path.abspath(glb_path))
    for candidate in (sound, os.path.join(here, sound), os.path.join(here, os.path.basename(sound))):
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    return None


# Live Link Face packets (what `distilface stream --output livelink` and the iPhone app send):
# big-endian uint8 version | int32 length + device id | int32 length + subject name | int32 frame,
# float32 sub-frame, int32 fps numerator, int32 denominator | uint8 count | count float32 values:
# the 52 ARKit blendshapes in ARKit's order (below), then 9 head and eye rotations.
LIVE_LINK_VERSION = 6
LIVE_LINK_PORT = 11111
# distilface.rig.arkit.ARKIT_52 again: the add-on runs in Blender's Python without distilface
# installed; tests/test_blender.py keeps the two equal.
ARKIT_ORDER = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)


def decode_livelink(packet):
    """One Live Link Face packet -> dict(subject, frame (float, sub-frame included), fps, values:
    {ARKit name: value}). ValueError for anything else. Bytes after the values are ignored (room
    for what a later version of the app may append)."""
    try:
        version = packet[0]
        if version != LIVE_LINK_VERSION:
            raise ValueError(f"Live Link Face version {version}, this reads {LIVE_LINK_VERSION}")
        at, texts = 1, []
        for _ in range(2):  # device id, subject name
            (n,) = struct.unpack_from(">i", packet, at)
            if not 0 <= n <= 1024:
                raise ValueError(f"name length {n}")
            texts.append(packet[at + 4:at + 4 + n].decode("utf-8"))
            at += 4 + n
        frame, sub, num, den = struct.unpack_from(">ifii", packet, at)
        count = packet[at + 16]
        values = struct.unpack_from(f">{count}f", packet, at + 17)
    except (IndexError, struct.error, UnicodeDecodeError) as e:
        raise ValueError(f"not a Live Link Face packet ({len(packet)} bytes): {e}") from None
    if count < len(ARKIT_ORDER) or den <= 0 or num <= 0:
        raise ValueError(f"Live Link Face packet with {count} values at {num}/{den} fps")
    if not (math.isfinite(sub) and all(math.isfinite(v) for v in values)):
        raise ValueError("Live Link Face packet with a NaN or infinite number")
    return {"subject": texts[1], "frame": frame + sub, "fps": num / den,
            "values": dict(zip(ARKIT_ORDER, values))}


class LiveLinkReceiver:
    """Live Link Face packets from a UDP port, read without blocking (Blender's UI runs `poll`
    from a timer). Malformed packets are counted and skipped, never raised."""

    def __init__(self, port=LIVE_LINK_PORT, host="127.0.0.1", subject=None):
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.subject = subject  # only this subject's packets when given
        self.frames = 0
        self.bad_packets = 0

    def poll(self):
        """Every packet waiting now, decoded, oldest first."""
        out = []
        while True:
            try:
                packet = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return out
            try:
                frame = decode_livelink(packet)
            except ValueError:
                self.bad_packets += 1
                continue
            if self.subject is None or frame["subject"] == self.subject:
                self.frames += 1
                out.append(frame)

    def close(self):
        self.sock.close()


def shape_key_map(obj):
    """ARKit name -> the object's shape key, matched case-folded ("jawOpen" or VRM "JawOpen")."""
    keys = obj.data.shape_keys.key_blocks if obj and obj.type == "MESH" and obj.data.shape_keys else []
    by_name = {k.name.casefold(): k for k in keys}
    return {n: by_name[n.casefold()] for n in ARKIT_ORDER if n.casefold() in by_name}


class LiveApplier:
    """Puts received frames on an object's shape keys; with `record`, keys them at the scene frame
    of their timecode: the first packet is `start_frame`, later ones follow at the scene's rate."""

    def __init__(self, obj, record=False, start_frame=0):
        self.keys = shape_key_map(obj)
        if not self.keys:
            raise ValueError(f"{obj.name if obj else 'no object'}: no shape keys with ARKit names")
        self.record, self.start_frame = record, start_frame
        self.first = None
        self.recorded = 0

    def scene_frame(self, frame, scene):
        fps = scene.render.fps / scene.render.fps_base
        return self.start_frame + (frame["frame"] - self.first) * fps / frame["fps"]

    def apply(self, frames, scene):
        for frame in frames:
            if self.first is None:
                self.first = frame["frame"]
            if not self.record and frame is not frames[-1]:
                continue  # live view: only the newest matters
            at = self.scene_frame(frame, scene)
            at_whole = round(at)
            if abs(at - at_whole) < 1e-3:
                at = at_whole
            for name, key in self.keys.items():
                key.value = frame["values"][name]
                if self.record:
                    key.keyframe_insert("value", frame=at)
            self.recorded += self.record


def set_scene_rate(scene, fps):
    """Blender's frame rate is fps / fps_base with an integer fps: 30 -> 30 / 1, 29.97 -> 30 / 1.001."""
    whole = max(1, round(fps))
    scene.render.fps = whole
    scene.render.fps_base = whole / fps


def _numpy_for_the_importer():
    """Blender 3.4's glTF importer calls `np.bool`, which numpy 1.24-1.26 removed (2.0 has it again,
    as `np.bool_`): Debian 12's blender with its python3-numpy fails on it. Same alias as numpy 2."""
    try:
        import numpy as np
    except ImportError as e:
        raise RuntimeError("Blender's glTF importer needs numpy in Blender's Python: a Blender from "
                           "blender.org bundles it; Debian's blender needs python3-numpy") from e
    if not hasattr(np, "bool"):
        np.bool = np.bool_


def fcurves(anim_data):
    """The F-curves animating an ID: `action.fcurves` up to Blender 4.3; from 4.4 actions have
    slots and layers, and 5.0 drops `action.fcurves` for the assigned slot's channel bag."""
    if anim_data is None or anim_data.action is None:
        return []
    try:
        from bpy_extras.anim_utils import animdata_get_channelbag_for_assigned_slot
    except ImportError:  # Blender < 4.4
        return list(anim_data.action.fcurves)
    bag = animdata_get_channelbag_for_assigned_slot(anim_data)
    return list(bag.fcurves) if bag else []


def sound_strips(scene):
    """The sequencer's strips collection: `strips` from Blender 4.4 (5.0 drops `sequences`)."""
    if scene.sequence_editor is None:
        scene.sequence_editor_create()
    ed = scene.sequence_editor
    return ed.strips if hasattr(ed, "strips") else ed.sequences


def _snap_keys_to_frames(anim_data):
    """Key times are float32 seconds (k / 30 in the file), so k / 30 * 30 comes out as 62.999996:
    put keys within 1e-3 of a whole frame on it, handles moved with them."""
    for fc in fcurves(anim_data):
        for p in fc.keyframe_points:
            shift = round(p.co.x) - p.co.x
            if 0 < abs(shift) < 1e-3:
                p.co.x += shift
                p.handle_left.x += shift
                p.handle_right.x += shift
        fc.update()


def import_animation(context, glb_path, audio_path=None):
    """Imports the face and its animation, then the speech; returns the face object."""
    import bpy

    if audio_path and not os.path.isfile(audio_path):
        raise FileNotFoundError(f"{audio_path}: no such sound file")
    doc = read_glb_json(glb_path)
    _numpy_for_the_importer()
    fps, keys, sound = animation_info(doc, glb_path)
    scene = context.scene
    # The importer places each key at time * scene fps (its animation code reads the scene's rate),
    # so set the rate first: keys then land on whole frames 0 .. keys - 1.
    set_scene_rate(scene, fps)
    before = set(bpy.data.objects)
    result = bpy.ops.import_scene.gltf(filepath=glb_path)
    if "FINISHED" not in result:
        raise RuntimeError(f"{glb_path}: Blender's glTF importer failed ({result})")
    faces = [o for o in bpy.data.objects if o not in before and o.type == "MESH"
             and o.data.shape_keys is not None]
    if not faces:
        raise RuntimeError(f"{glb_path}: the importer made no mesh with shape keys")
    face = faces[0]
    _snap_keys_to_frames(face.data.shape_keys.animation_data)
    scene.frame_start = 0  # the first key is at time 0
    scene.frame_end = max(0, keys - 1)
    scene.frame_set(0)

    audio = os.path.abspath(audio_path) if audio_path else find_sound(sound, glb_path)
    if audio and not bpy.app.build_options.audaspace:
        # Some builds have no sound at all (PyPI's bpy 4.2 module, for one): new_sound would fail,
        # so keep the animation and say why the speech is not there.
        print(f"distilface: this Blender ({bpy.app.version_string}) was built without sound (Audaspace): "
              f"the animation is imported, the speech {audio} is not", file=sys.stderr)
    elif audio:
        sound_strips(scene).new_sound(name=os.path.basename(audio), filepath=audio, channel=1, frame_start=0)
        # Playback drops frames rather than drifting from the sound.
        scene.sync_mode = "AUDIO_SYNC"
    elif sound:
        print(f"distilface: {glb_path}: sound file {sound!r} not found; give it with --audio",
              file=sys.stderr)
    context.view_layer.objects.active = face
    return face


try:
    import bpy
    from bpy.props import StringProperty
    from bpy_extras.io_utils import ImportHelper

    class DISTILFACE_OT_import_glb(bpy.types.Operator, ImportHelper):
        """Import a distilface animate .glb with its speech, at the animation's frame rate"""
        bl_idname = "import_anim.distilface_glb"
        bl_label = "Import DistilFace animation"
        bl_options = {"REGISTER", "UNDO"}
        filename_ext = ".glb"
        filter_glob: StringProperty(default="*.glb", options={"HIDDEN"})
        audio: StringProperty(name="Sound file", subtype="FILE_PATH", default="",
                              description="The speech, when it is not where the .glb says")

        def execute(self, context):
            try:
                import_animation(context, self.filepath, self.audio or None)
            except (OSError, ValueError, RuntimeError) as e:
                self.report({"ERROR"}, str(e))
                return {"CANCELLED"}
            return {"FINISHED"}

    class DISTILFACE_OT_live(bpy.types.Operator):
        """Put Live Link Face packets (distilface stream --output livelink) on the active mesh's
        shape keys until Esc or Stop; with Record, key them into the timeline"""
        bl_idname = "distilface.live"
        bl_label = "Start live"
        running = False  # one receiver at a time (the port): the panel's Stop clears this

        def execute(self, context):
            scene = context.scene
            try:
                self.applier = LiveApplier(context.active_object, record=scene.distilface_record,
                                           start_frame=scene.frame_current)
                self.receiver = LiveLinkReceiver(scene.distilface_port)
            except (OSError, ValueError) as e:
                self.report({"ERROR"}, f"DistilFace live: {e}")
                return {"CANCELLED"}
            DISTILFACE_OT_live.running = True
            self.timer = context.window_manager.event_timer_add(1 / 120, window=context.window)
            context.window_manager.modal_handler_add(self)
            self.report({"INFO"}, f"DistilFace live: listening on UDP {self.receiver.port}")
            return {"RUNNING_MODAL"}

        def modal(self, context, event):
            if event.type == "ESC" or not DISTILFACE_OT_live.running:
                self._stop(context)
                self.report({"INFO"}, f"DistilFace live: {self.receiver.frames} frames, "
                                      f"{self.applier.recorded} recorded")
                return {"FINISHED"}
            if event.type == "TIMER":
                try:
                    frames = self.receiver.poll()
                    if frames:
                        self.applier.apply(frames, context.scene)
                        for area in context.screen.areas:
                            area.tag_redraw()
                except Exception as e:  # noqa: BLE001 - never leave the timer and the port behind
                    self._stop(context)
                    self.report({"ERROR"}, f"DistilFace live stopped: {e}")
                    return {"CANCELLED"}
            return {"PASS_THROUGH"}

        def _stop(self, context):
            context.window_manager.event_timer_remove(self.timer)
            self.receiver.close()
            DISTILFACE_OT_live.running = False

    class DISTILFACE_OT_live_stop(bpy.types.Operator):
        """Stop receiving"""
        bl_idname = "distilface.live_stop"
        bl_label = "Stop live"

        def execute(self, context):
            DISTILFACE_OT_live.running = False
            return {"FINISHED"}

    class DISTILFACE_PT_live(bpy.types.Panel):
        bl_label = "DistilFace live"
        bl_space_type = "VIEW_3D"
        bl_region_type = "UI"
        bl_category = "DistilFace"

        def draw(self, context):
            col = self.layout.column()
            col.prop(context.scene, "distilface_port")
            col.prop(context.scene, "distilface_record")
            if DISTILFACE_OT_live.running:
                col.operator(DISTILFACE_OT_live_stop.bl_idname)
            else:
                col.operator(DISTILFACE_OT_live.bl_idname)

    CLASSES = (DISTILFACE_OT_import_glb, DISTILFACE_OT_live, DISTILFACE_OT_live_stop, DISTILFACE_PT_live)

    def _menu(self, context):
        self.layout.operator(DISTILFACE_OT_import_glb.bl_idname, text="DistilFace animation (.glb)")

    def register():
        from bpy.props import BoolProperty, IntProperty

        for cls in CLASSES:
            bpy.utils.register_class(cls)
        bpy.types.TOPBAR_MT_file_import.append(_menu)
        bpy.types.Scene.distilface_port = IntProperty(
            name="UDP port", default=LIVE_LINK_PORT, min=1, max=65535,
            description="Where Live Link Face packets arrive (distilface stream --livelink-port)")
        bpy.types.Scene.distilface_record = BoolProperty(
            name="Record", default=False, description="Key every frame into the timeline from the current frame")

    def unregister():
        del bpy.types.Scene.distilface_record
        del bpy.types.Scene.distilface_port
        bpy.types.TOPBAR_MT_file_import.remove(_menu)
        for cls in reversed(CLASSES):
            bpy.utils.unregister_class(cls)
except ImportError:  # read outside Blender (its tests import the helpers above)
    pass


def import_face(context, glb_path):
    """A .glb's mesh through Blender's importer -> the object; an animation in the file is dropped
    (any `animate` .glb serves as the face of a live take)."""
    import bpy

    read_glb_json(glb_path)  # a clear error for a file that is not a .glb
    _numpy_for_the_importer()
    before = set(bpy.data.objects)
    bpy.ops.import_scene.gltf(filepath=glb_path)
    meshes = [o for o in bpy.data.objects if o not in before and o.type == "MESH"]
    if not meshes:
        raise RuntimeError(f"{glb_path}: the importer made no mesh")
    face = meshes[0]
    if face.data.shape_keys is not None:  # an animate .glb as the face: the live take replaces its animation
        face.data.shape_keys.animation_data_clear()
    context.view_layer.objects.active = face
    return face


def record_live(context, port, record, frames_max, idle_s, wait_s, keep_rate):
    """The `--live` script mode: receive until `frames_max` frames, `idle_s` without a packet after
    the first, or `wait_s` without any; with `record`, the scene's rate becomes the stream's
    (unless `keep_rate`) so every frame is keyed on a whole frame, and the range covers them."""
    import time

    scene = context.scene
    applier = LiveApplier(context.active_object, record=record, start_frame=scene.frame_current)
    receiver = LiveLinkReceiver(port)
    print(f"distilface: listening on UDP {receiver.port}", flush=True)
    start = last = time.monotonic()
    try:
        while True:
            frames = receiver.poll()
            now = time.monotonic()
            if frames:
                if applier.first is None and record and not keep_rate:
                    set_scene_rate(scene, frames[0]["fps"])
                applier.apply(frames, scene)
                last = now
            elif applier.first is None and now - start > wait_s:
                raise TimeoutError(f"no Live Link Face packet on UDP {receiver.port} in {wait_s:g} s")
            elif applier.first is not None and now - last > idle_s:
                break
            if frames_max and receiver.frames >= frames_max:
                break
            time.sleep(0.002)
    finally:
        receiver.close()
    if record and applier.recorded:
        scene.frame_start = applier.start_frame
        anim = next(iter(applier.keys.values())).id_data.animation_data
        last_key = max(p.co.x for fc in fcurves(anim) for p in fc.keyframe_points)
        scene.frame_end = int(math.ceil(last_key))
    print(f"distilface: received {receiver.frames} frames ({receiver.bad_packets} malformed "
          f"packets skipped), recorded {applier.recorded}", flush=True)


def main(argv):
    import argparse

    import bpy

    p = argparse.ArgumentParser(prog="blender --python distilface_blender.py --",
                                description="Open a distilface animate .glb in Blender with its speech; "
                                            "or receive Live Link Face packets onto a face.")
    p.add_argument("glb", nargs="?", help="a distilface animate .glb (with --live: any face .glb)")
    p.add_argument("--audio", help="the speech, when it is not where the .glb says")
    p.add_argument("--save", help="write the scene to this .blend")
    p.add_argument("--empty", action="store_true",
                   help="start from an empty scene (no default cube, camera and light)")
    live = p.add_argument_group("live (Live Link Face packets: distilface stream --output livelink)")
    live.add_argument("--live", type=int, metavar="PORT",
                      help=f"receive on this UDP port ({LIVE_LINK_PORT} is the app's; 0: any free port)")
    live.add_argument("--record", action="store_true", help="key every frame into the timeline")
    live.add_argument("--frames", type=int, default=0, help="stop after this many frames (0: no limit)")
    live.add_argument("--idle-s", type=float, default=2.0, help="stop this long after the last packet")
    live.add_argument("--wait-s", type=float, default=60.0, help="give up after this long without any")
    live.add_argument("--keep-rate", action="store_true", help="record at the scene's frame rate")
    a = p.parse_args(argv)
    if a.empty:
        bpy.ops.wm.read_factory_settings(use_empty=True)
    try:
        if a.live is not None:
            if a.glb:
                import_face(bpy.context, os.path.abspath(a.glb))
            record_live(bpy.context, a.live, a.record, a.frames, a.idle_s, a.wait_s, a.keep_rate)
        elif not a.glb:
            p.error("give a .glb, or --live PORT")
        else:
            face = import_animation(bpy.context, os.path.abspath(a.glb), a.audio)
            print(f"distilface: {a.glb}: {len(face.data.shape_keys.key_blocks) - 1} shape keys, frames "
                  f"{bpy.context.scene.frame_start}..{bpy.context.scene.frame_end} at "
                  f"{bpy.context.scene.render.fps / bpy.context.scene.render.fps_base:g} fps")
    except (OSError, ValueError, RuntimeError) as e:
        print(f"distilface: {e}", file=sys.stderr)
        sys.exit(1)
    if a.save:
        bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(a.save))
        print(f"distilface: wrote {a.save}")


if __name__ == "__main__":
    main(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else [])
