{
  description = "weft: a file-driven eBPF dataplane for Linux hosts";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      # BPF objects are compiled by an unwrapped clang (the cc-wrapper's hardening flags make
      # no sense for the bpf target) against the kernel's UAPI headers.
      bpfEnv = pkgs: {
        WEFT_CLANG = "${pkgs.llvmPackages.clang-unwrapped}/bin/clang";
        WEFT_BPF_CFLAGS = "-I${pkgs.linuxHeaders}/include";
      };
    in
    {
      packages = forAll (pkgs: {
        default = pkgs.rustPlatform.buildRustPackage ({
          pname = "weft";
          version = "0.1.0";
          src = ./.;
          cargoLock.lockFile = ./Cargo.lock;
          cargoBuildFlags = [ "-p" "weft" ];
          nativeBuildInputs = [ pkgs.pkg-config pkgs.llvmPackages.clang-unwrapped ];
          buildInputs = [ pkgs.elfutils pkgs.zlib ];
          hardeningDisable = [ "zerocallusedregs" "stackprotector" ];
          # The tests need root, a BPF filesystem and network namespaces.
          doCheck = false;
          meta.mainProgram = "weft";
        } // bpfEnv pkgs);
      });

      devShells = forAll (pkgs: {
        default = pkgs.mkShell ({
          packages = [
            pkgs.cargo pkgs.rustc pkgs.clippy pkgs.rustfmt
            pkgs.llvmPackages.clang-unwrapped pkgs.pkg-config pkgs.elfutils pkgs.zlib
            pkgs.iproute2 pkgs.bpftools pkgs.socat pkgs.iputils pkgs.util-linux
          ];
          hardeningDisable = [ "zerocallusedregs" "stackprotector" ];
        } // bpfEnv pkgs);
      });
    };
}
