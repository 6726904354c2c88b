// The face: face.glb (distilface.rig.gltf, 52 ARKit morph targets named in mesh.extras.targetNames,
// which GLTFLoader turns into morphTargetDictionary) in a three.js scene lit for skin.
// Units are metres, y up, the face looking down +z (the rig's frame scaled by 1e-3).
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";

const SKIN_SRGB = 0xe0b89e; // distilface.rig.render's skin, a little lighter under these lights
const CAVITY_SRGB = 0x2a0e10; // what an open mouth shows: the glb leaves the mouth opening empty
const BACKGROUND_SRGB = 0x22262e;
// The mouth in the rig's neutral pose, metres: inner lip mid line at y -42.5 mm, z 52 mm
// (MediaPipe landmarks 13/14). MOUTH_BOX is the region a screenshot test compares.
const MOUTH_CENTRE_M = [0, -0.043, 0.052];
const MOUTH_HALF_SIZE_M = [0.036, 0.024];
const CAMERA_TARGET_M = [0, -0.022, 0.02];
const CAMERA_POSITION_M = [0, -0.012, 0.40];
const CAMERA_FOV_DEG = 26;

export class Face {
  /** canvas: the <canvas> to draw into. Call `await face.load(url)` before `setWeights`. */
  constructor(canvas) {
    this.canvas = canvas;
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: true });
    this.renderer.setPixelRatio(window.devicePixelRatio || 1);
    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(BACKGROUND_SRGB);
    this.camera = new THREE.PerspectiveCamera(CAMERA_FOV_DEG, 1, 0.01, 10);
    this.camera.position.set(...CAMERA_POSITION_M);
    this.controls = new OrbitControls(this.camera, canvas);
    this.controls.target.set(...CAMERA_TARGET_M);
    this.controls.minDistance = 0.12;
    this.controls.maxDistance = 1.2;
    this.controls.update();
    this._lights();
    this.mesh = null;
    this._columns = new WeakMap(); // names array -> morph influence index per name (-1: none)
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
  }

  _lights() {
    this.scene.add(new THREE.HemisphereLight(0xfff4ea, 0x3a3030, 1.4));
    const key = new THREE.DirectionalLight(0xffffff, 2.2);
    key.position.set(-0.4, 0.5, 0.8);
    const fill = new THREE.DirectionalLight(0xdde8ff, 0.8);
    fill.position.set(0.6, 0.1, 0.5);
    const rim = new THREE.DirectionalLight(0xffffff, 0.6);
    rim.position.set(0, 0.4, -0.8);
    this.scene.add(key, fill, rim);
  }

  async load(url) {
    const gltf = await new GLTFLoader().loadAsync(url);
    gltf.scene.traverse((o) => {
      if (o.isMesh && o.morphTargetDictionary) this.mesh = o;
    });
    if (!this.mesh) throw new Error(`${url}: no mesh with morph targets`);
    this.mesh.material = new THREE.MeshStandardMaterial({
      color: SKIN_SRGB, roughness: 0.62, metalness: 0.0, side: THREE.DoubleSide,
    });
    // A dark ellipsoid behind the lips stands for the mouth cavity; it stays inside the closed mouth.
    const cavity = new THREE.Mesh(
      new THREE.SphereGeometry(1, 32, 16),
      new THREE.MeshStandardMaterial({ color: CAVITY_SRGB, roughness: 0.9 }),
    );
    cavity.scale.set(0.026, 0.02, 0.016);
    cavity.position.set(MOUTH_CENTRE_M[0], MOUTH_CENTRE_M[1] - 0.004, MOUTH_CENTRE_M[2] - 0.02);
    this.scene.add(gltf.scene, cavity);
    this.names = Object.keys(this.mesh.morphTargetDictionary);
    return this;
  }

  resize() {
    const { clientWidth: w, clientHeight: h } = this.canvas;
    if (!w || !h) return;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
  }

  /** names: curve names (array, reused across calls); values: their weights, same order. */
  setWeights(names, values) {
    if (!this.mesh) return;
    let cols = this._columns.get(names);
    if (!cols) {
      const dict = this.mesh.morphTargetDictionary;
      cols = Int32Array.from(names, (n) => (n in dict ? dict[n] : -1));
      this._columns.set(names, cols);
    }
    const influences = this.mesh.morphTargetInfluences;
    for (let i = 0; i < cols.length; i++) if (cols[i] >= 0) influences[cols[i]] = values[i];
  }

  /** Current weights by name. */
  weights() {
    const out = {};
    if (!this.mesh) return out;
    for (const [n, i] of Object.entries(this.mesh.morphTargetDictionary)) out[n] = this.mesh.morphTargetInfluences[i];
    return out;
  }

  render() {
    this.controls.update();
    this.renderer.render(this.scene, this.camera);
  }

  /** The mouth region of the neutral face on screen, CSS pixels of the page: {x, y, width, height}. */
  mouthRect() {
    const box = this.canvas.getBoundingClientRect();
    const xs = [], ys = [];
    for (const dx of [-1, 1]) for (const dy of [-1, 1]) {
      const p = new THREE.Vector3(MOUTH_CENTRE_M[0] + dx * MOUTH_HALF_SIZE_M[0], MOUTH_CENTRE_M[1] + dy * MOUTH_HALF_SIZE_M[1],
        MOUTH_CENTRE_M[2]).project(this.camera);
      xs.push(box.left + (p.x + 1) / 2 * box.width);
      ys.push(box.top + (1 - p.y) / 2 * box.height);
    }
    const x = Math.min(...xs), y = Math.min(...ys);
    return { x, y, width: Math.max(...xs) - x, height: Math.max(...ys) - y };
  }
}
